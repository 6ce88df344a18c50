"""Two real `berth serve` processes on one data directory (filesystem driver, SQLite)."""
