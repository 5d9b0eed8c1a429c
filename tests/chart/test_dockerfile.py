"""deploy/Dockerfile builds and ships exactly the production programs the chart runs, lean.

Static checks (no docker, no cargo): the image's one binary (`accesshub`, crates/accesshub-image)
is built by name and dispatches to exactly the programs the chart runs plus accessctl; every
program is a link to it; no simulator or benchmark can reach the image; dependencies build in a
cached layer of their own (cargo-chef); debug info leaves the binary for a separate artefact; the
runtime base has no shell or package manager and the user is not root. The size is measured by
deploy/image-size.sh (BENCHMARKS.md "Container image").
"""
from __future__ import annotations

import re
import shlex

from conftest import REPO, SERVICES

DOCKERFILE = REPO / "deploy" / "Dockerfile"
IMAGE_CRATE = REPO / "crates" / "accesshub-image"

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


def stages() -> dict[str, list[str]]:
    """Stage name -> its instructions."""
    out: dict[str, list[str]] = {}
    name = None
    for i in instructions():
        m = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", i, re.I)
        if m:
            name = m.group(2) or m.group(1)
            out[name] = [i]
        elif name:
            out[name].append(i)
    return out


def builder_run() -> str:
    runs = [i for i in instructions() if i.startswith("RUN") and "cargo build" in i]
    assert len(runs) == 1, runs
    return runs[0]


def cargo_build_args() -> list[str]:
    cmd = re.search(r"cargo build([^;]*);", builder_run())
    assert cmd, builder_run()
    return shlex.split(cmd.group(1))


def test_cargo_builds_only_the_image_binary():
    args = cargo_build_args()
    assert not {"--workspace", "--all", "--bins", "--all-targets", "--examples", "--benches",
                "--tests"} & set(args), args
    assert "--release" in args and "--locked" in args
    assert args[args.index("-p") + 1] == "accesshub-image"
    assert args[args.index("--bin") + 1] == "accesshub"
    assert 'name = "accesshub"' in (IMAGE_CRATE / "Cargo.toml").read_text()


def test_the_binary_runs_exactly_the_shipped_programs():
    main = (IMAGE_CRATE / "src" / "main.rs").read_text()
    table = main[main.index("const PROGRAMS"):]
    table = table[:table.index("];")]
    assert set(re.findall(r'\("([a-z-]+)",', table)) == SHIPPED
    # Each program is that service's own main.rs, compiled in as a module.
    for path in re.findall(r'#\[path = "([^"]+)"\]', main):
        assert (IMAGE_CRATE / "src" / path).resolve().is_file(), path


def test_every_program_is_a_link_to_the_binary():
    loop = re.search(r"for bin in ([^;]*); do", builder_run())
    assert loop, builder_run()
    linked = loop.group(1).split()
    assert len(linked) == len(set(linked)) and set(linked) == SHIPPED
    assert 'ln -s accesshub "/out/bin/${bin}"' in builder_run()
    runtime = stages()["runtime"]
    assert [i for i in runtime if i.startswith("COPY")] == [
        "COPY --from=builder /out/bin/ /usr/local/bin/"]


def test_no_simulator_or_benchmark_can_reach_the_image():
    text = " ".join(instructions())
    for name in NEVER:
        assert not re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text), name
    deps = (IMAGE_CRATE / "Cargo.toml").read_text().split("[dependencies]")[1].split("\n[")[0]
    assert "vendor-sim" not in deps and "accesshub-bench" not in deps


def test_dependencies_build_in_a_cached_layer_of_their_own():
    s = stages()
    assert any("cargo chef prepare --recipe-path recipe.json" in i for i in s["planner"])
    builder = s["builder"]
    cook = [n for n, i in enumerate(builder) if "cargo chef cook --release --locked" in i]
    copy_src = [n for n, i in enumerate(builder) if i == "COPY . ."]
    build = [n for n, i in enumerate(builder) if "cargo build --release" in i]
    assert cook and copy_src and build and cook[0] < copy_src[0] < build[0], builder
    assert "COPY --from=planner /src/recipe.json recipe.json" in builder


def test_debug_info_is_split_off_the_shipped_binary():
    run = builder_run()
    assert "objcopy --only-keep-debug target/release/accesshub /out/debug/accesshub.debug" in run
    assert "objcopy --strip-all --add-gnu-debuglink=/out/debug/accesshub.debug" in run
    assert stages()["debug-symbols"] == [
        "FROM scratch AS debug-symbols", "COPY --from=builder /out/debug/ /"]


def test_runtime_is_distroless_and_not_root():
    runtime = stages()["runtime"]
    base = runtime[0].split()[1]
    assert base.startswith("gcr.io/distroless/cc-debian12"), base
    assert not any(i.startswith("RUN") for i in runtime), "no shell in the runtime image"
    user = [i for i in runtime if i.startswith("USER")]
    assert user and re.fullmatch(r"USER [1-9]\d*:[1-9]\d*", user[-1]), user
