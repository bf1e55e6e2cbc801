"""scripts/test-deps.sh (run by ``make test``): installs Debian's chromium only in CI or when asked, retries
after ``apt-get update``, and fails loudly. Driven with a fake apt-get that records its calls."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "test-deps.sh"

FAKE_APT = """#!/usr/bin/env bash
echo "$*" >> "$FAKE_LOG"
case "$1" in
  update) [[ "$FAKE_MODE" == "broken" ]] && exit 100; touch "$FAKE_LOG.updated"; exit 0 ;;
  install)
    if [[ "$FAKE_MODE" == "ok" || ( "$FAKE_MODE" == "stale" && -e "$FAKE_LOG.updated" ) ]]; then
      printf '#!/bin/sh\\n' > "$MARGIN_CHROMIUM"; chmod +x "$MARGIN_CHROMIUM"; exit 0
    fi
    echo "E: Unable to locate package chromium" >&2; exit 100 ;;
esac
"""


def _run(tmp_path: Path, mode: str, *, ci: bool = True, present: bool = False) -> tuple[int, str, list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "apt-get").write_text(FAKE_APT)
    (bin_dir / "sudo").write_text('#!/usr/bin/env bash\nexec "$@"\n')  # so the test runs as any user
    for tool in ("apt-get", "sudo"):
        (bin_dir / tool).chmod(0o755)
    chromium = tmp_path / "chromium"
    if present:
        chromium.write_text("#!/bin/sh\n")
        chromium.chmod(0o755)
    log = tmp_path / "apt.log"
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("CI", "MARGIN_INSTALL_TEST_DEPS")},
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "MARGIN_CHROMIUM": str(chromium),
        "FAKE_LOG": str(log),
        "FAKE_MODE": mode,
        **({"CI": "true"} if ci else {}),
    }
    done = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30)
    calls = [line.split()[0] for line in log.read_text().splitlines()] if log.exists() else []
    return done.returncode, done.stderr, calls


def test_does_nothing_outside_ci(tmp_path):
    assert _run(tmp_path, "ok", ci=False) == (0, "", [])


def test_does_nothing_when_chromium_is_there(tmp_path):
    assert _run(tmp_path, "broken", present=True) == (0, "", [])


@pytest.mark.parametrize(("mode", "calls"), [("ok", ["install"]), ("stale", ["install", "update", "install"])])
def test_installs_and_retries_after_an_update(tmp_path, mode, calls):
    code, err, made = _run(tmp_path, mode)
    assert (code, made) == (0, calls), err
    assert os.access(tmp_path / "chromium", os.X_OK)


def test_fails_with_a_clear_message(tmp_path):
    code, err, calls = _run(tmp_path, "never")
    assert code == 1 and calls == ["install", "update", "install"]
    assert "'apt-get install chromium' failed" in err
