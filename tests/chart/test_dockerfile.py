"""deploy/Dockerfile builds and ships exactly the production binaries the chart runs.

Static checks (no docker, no cargo): the cargo invocation names every binary explicitly, the
image copies exactly those, and no simulator or benchmark binary can reach the image.
"""
from __future__ import annotations

import re
import shlex

from conftest import REPO, SERVICES

DOCKERFILE = REPO / "deploy" / "Dockerfile"

# What the image must hold: every service the chart runs (command: /usr/local/bin/<service>)
# plus accessctl (migrations Job, runbooks).
SHIPPED = set(SERVICES.values()) | {"accessctl"}
# Workspace binaries that must never ship.
NEVER = {"vendor-sim", "ingest-bench", "worker-bench", "sync-bench", "dlq-bench", "baselines",
         "keyreq-bench",
         "bench-summary"}


def instructions() -> list[str]:
    """Dockerfile instructions with line continuations joined and comments dropped."""
    out, cur = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith("#"):
            continue
        if line.rstrip().endswith("\\"):
            cur += line.rstrip()[:-1] + " "
            continue
        cur += line
        if cur.strip():
            out.append(cur.strip())
        cur = ""
    return out


def builder_run() -> str:
    runs = [i for i in instructions() if i.startswith("RUN") and "cargo build" in i]
    assert len(runs) == 1, runs
    return runs[0]


def cargo_build_args() -> list[str]:
    cmd = re.search(r"cargo build([^;]*);", builder_run())
    assert cmd, builder_run()
    return shlex.split(cmd.group(1))


def test_cargo_builds_only_the_named_binaries():
    args = cargo_build_args()
    assert not {"--workspace", "--all", "--bins", "--all-targets", "--examples", "--benches",
                "--tests"} & set(args), args
    assert "--release" in args and "--locked" in args
    bins = {args[i + 1] for i, a in enumerate(args) if a == "--bin"}
    packages = {args[i + 1] for i, a in enumerate(args) if a in ("-p", "--package")}
    assert bins == SHIPPED
    # Naming the packages keeps cargo from building anything of the other workspace members;
    # each named package exists and declares the binary the image ships from it.
    assert len(packages) == len(SHIPPED), packages
    declared = set()
    for pkg in packages:
        manifests = [m for m in REPO.glob("crates/**/Cargo.toml")
                     if re.search(rf'^name = "{re.escape(pkg)}"', m.read_text(), re.M)]
        assert len(manifests) == 1, (pkg, manifests)
        text = manifests[0].read_text()
        bin_names = set(re.findall(r'\[\[bin\]\]\s*name = "([^"]+)"', text))
        # A package without [[bin]] sections builds one binary named after the package.
        declared |= bin_names or ({pkg} if (manifests[0].parent / "src/main.rs").is_file() else set())
    assert SHIPPED <= declared, SHIPPED - declared


def test_image_gets_exactly_the_built_binaries():
    loop = re.search(r"for bin in ([^;]*); do", builder_run())
    assert loop, builder_run()
    installed = loop.group(1).split()
    assert len(installed) == len(set(installed))
    assert set(installed) == SHIPPED
    assert 'install -m 0755 "target/release/${bin}" "/out/${bin}"' in builder_run()
    copies = [i for i in instructions() if i.startswith("COPY --from=builder")]
    assert copies == ["COPY --from=builder /out/ /usr/local/bin/"]


def test_no_simulator_or_benchmark_binary_in_the_image():
    text = " ".join(instructions())
    for name in NEVER:
        assert not re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text), name
