"""The Dockerfile's promises, checked statically (the build itself is `make image-test`):
multi-stage on a BASE argument defaulting to python:3.11-slim, a non-root user, the /data
volume, configuration from BERTH_* variables Berth reads, a HEALTHCHECK on a route the app
serves, `berth serve` as the entry point, and a build context that holds what it copies."""
from __future__ import annotations

import fnmatch
import shlex

from .spec import ROOT, env_names, exec_form, get_routes, healthcheck_url, parse_dockerfile

DF = parse_dockerfile()


def test_multi_stage_on_one_base_argument():
    assert DF.args == {"BASE": "python:3.11-slim"}
    assert len(DF.stages) >= 2
    assert all(s.base == "${BASE}" for s in DF.stages)
    build = DF.stages[0].name
    copies = DF.final.all("COPY")
    assert any(c.startswith(f"--from={build} /opt/berth") for c in copies), copies
    # the run stage installs nothing: no pip, no compilers, no source tree
    assert not any("pip" in r for r in DF.final.all("RUN"))
    assert not [c for c in copies if not c.startswith("--from=")]


def test_non_root_user_owns_the_data_volume():
    (user,) = DF.final.all("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0 and gid.isdigit() and int(gid) != 0  # numeric: runAsNonRoot can verify it
    run = " ".join(DF.final.all("RUN"))
    assert f"--uid {uid}" in run and f"chown {uid}:{gid} /data" in run
    assert exec_form(DF.final.all("VOLUME")[0]) == ["/data"]
    env = DF.env()
    assert env["BERTH_DATA"] == "/data"


def test_configuration_from_the_environment():
    env = DF.env()
    berth = {k for k in env if k.startswith("BERTH_")}
    assert berth and berth <= env_names(), sorted(berth - env_names())
    assert env["BERTH_HOST"] == "0.0.0.0"
    assert [e.split("/")[0] for e in DF.final.all("EXPOSE")] == [env["BERTH_PORT"]]
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"  # a read-only root filesystem: no .pyc written at run time


def test_entry_point_is_berth_serve():
    assert exec_form(DF.final.all("ENTRYPOINT")[0]) == ["berth"]
    assert exec_form(DF.final.all("CMD")[0]) == ["serve"]
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["berth"] == "registry.cli:main"
    assert DF.env()["PATH"].startswith("/opt/berth/bin:")


def test_healthcheck_requests_a_route(tmp_path):
    path = healthcheck_url(DF)
    assert path in get_routes(tmp_path), path
    (check,) = DF.final.all("HEALTHCHECK")
    assert "BERTH_PORT" in check  # follows the port the server listens on


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule: the last matching pattern wins; '!' re-includes."""
    ignored = False
    for pat in patterns:
        neg = pat.startswith("!")
        pat = pat[1:] if neg else pat
        parts = path.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        pat_norm = pat.replace("**/", "")
        if any(fnmatch.fnmatch(p, pat) or fnmatch.fnmatch(p.split("/")[-1], pat_norm) and pat.startswith("**/")
               for p in prefixes):
            ignored = not neg
    return ignored


def test_build_context_holds_what_the_dockerfile_copies():
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    for stage in DF.stages:
        for copy in stage.all("COPY"):
            words = shlex.split(copy)
            if words[0].startswith("--from="):
                continue
            for src in words[:-1]:
                assert (ROOT / src).exists(), src
                assert not _ignored(src, patterns), f"{src} is excluded by .dockerignore"
                if (ROOT / src).is_dir():
                    assert not _ignored(f"{src}/cli.py" if src == "registry" else f"{src}/db.py", patterns)
    for heavy in (".venv", "data", ".git", "tests", "bench", "registry/__pycache__"):
        assert _ignored(heavy, patterns), heavy
