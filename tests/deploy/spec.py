"""What the deploy tests check against: the Dockerfile's promises, the Kubernetes manifests, the
settings Berth reads and the routes it serves. Pure parsing, no programs."""
from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
KUBE = ROOT / "config" / "kubernetes"


# --- settings and routes ----------------------------------------------------------------------


def env_names() -> set[str]:
    """Every BERTH_* variable Berth reads: each setting's name by the rule BERTH_<PATH>, its
    older aliases, and the ``_FILE`` form of each (registry.config.leaves)."""
    from registry import config

    names: set[str] = set()
    for leaf in config.leaves():
        for name in (leaf.env, *leaf.aliases):
            names |= {name, name + "_FILE"}
    return names


def get_routes(tmp_path: Path) -> set[str]:
    """Paths of the plain (parameterless) GET routes of the app as `berth serve` builds it."""
    from registry.app import create_app
    from registry.config import Config

    app = create_app(Config.load(env={}, data_dir=tmp_path / "data"))
    return {r.resource.canonical for r in app.router.routes()
            if r.method in ("GET", "*") and r.resource is not None and "{" not in r.resource.canonical}


# --- the Dockerfile ---------------------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, op: str) -> list[str]:
        return [arg for o, arg in self.instructions if o == op]


@dataclass
class Dockerfile:
    args: dict[str, str]  # ARGs before the first FROM, with their defaults
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def env(self) -> dict[str, str]:
        """ENV of the final stage (KEY=VALUE forms)."""
        out: dict[str, str] = {}
        for arg in self.final.all("ENV"):
            for word in shlex.split(arg):
                key, sep, value = word.partition("=")
                if sep:
                    out[key] = value
        return out


def exec_form(arg: str) -> list[str]:
    """The JSON (exec) form of ENTRYPOINT/CMD/VOLUME; shell form is refused for those."""
    value = json.loads(arg)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), arg
    return value


def parse_dockerfile(path: Path = ROOT / "Dockerfile") -> Dockerfile:
    lines: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        if raw.lstrip().startswith("#") and not pending:
            continue
        if raw.lstrip().startswith("#"):
            continue  # a comment inside a continued instruction
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        line = (pending + raw).strip()
        pending = ""
        if line:
            lines.append(line)
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in lines:
        op, _, rest = line.partition(" ")
        op, rest = op.upper(), rest.strip()
        if op == "FROM":
            words = rest.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
        elif not stages:
            assert op == "ARG", f"only ARG may precede FROM, not {line!r}"
            key, _, default = rest.partition("=")
            args[key] = default
        else:
            stages[-1].instructions.append((op, rest))
    return Dockerfile(args, stages)


def healthcheck_url(df: Dockerfile) -> str:
    checks = df.final.all("HEALTHCHECK")
    assert len(checks) == 1, checks
    cmd = checks[0].split(" CMD ", 1)[1]
    match = re.search(r"http://127\.0\.0\.1:[^/'\"]+(/[A-Za-z0-9_/.-]*)", cmd)
    assert match, cmd
    return match.group(1)


# --- the manifests ----------------------------------------------------------------------------


@dataclass
class Doc:
    file: str
    body: dict

    @property
    def kind(self) -> str:
        return self.body["kind"]

    @property
    def name(self) -> str:
        return self.body["metadata"]["name"]

    @property
    def namespace(self) -> str | None:
        return self.body["metadata"].get("namespace")


def manifests() -> list[Doc]:
    docs = []
    for path in sorted(KUBE.glob("*.yaml")):
        for body in yaml.safe_load_all(path.read_text()):
            if body is not None:
                docs.append(Doc(path.name, body))
    return docs


def header_comment(file: str) -> str:
    """The file's comment lines, without their '#'."""
    return "\n".join(line[1:] for line in (KUBE / file).read_text().splitlines() if line.startswith("#"))


def documented_secret_keys(file: str, name: str) -> set[str] | None:
    """Keys of Secret ``name`` as the file's header creates it with `kubectl create secret generic
    NAME --from-literal=KEY=… --from-file=[KEY=]PATH` (continued lines included); None if it does not."""
    lines = header_comment(file).splitlines()
    for i, line in enumerate(lines):
        if re.search(rf"create secret generic {re.escape(name)}(\s|$)", line):
            command = line
            while command.rstrip().endswith("\\") and i + 1 < len(lines):
                i += 1
                command = command.rstrip()[:-1] + " " + lines[i]
            keys = set(re.findall(r"--from-literal=([^=\s]+)=", command))
            for spec in re.findall(r"--from-file=(\S+)", command):
                keys.add(spec.split("=", 1)[0] if "=" in spec else Path(spec).name)
            return keys
    return None
