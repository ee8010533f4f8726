"""The file system's floor for writing a lake: copies every file under SOURCE (a lake ddb-lake
wrote) into DEST the way a writer would (create the folders, write a staging file, rename it into
place), the bytes read into memory first so that only the writing is timed. Used for the
40,000-partition run in docs/BENCHMARKS.md ("Concurrent writes"). DEST must not exist yet, and
should not be where a large folder was just deleted (ext4 then scans recently deleted inodes).

usage: python3 benches/files_floor.py SOURCE DEST
"""
import os
import sys
import time


def main():
    src, dst = sys.argv[1], sys.argv[2]
    assert not os.path.exists(dst), f"{dst} exists"
    files = []
    for root, _, names in os.walk(src):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                files.append((os.path.relpath(path, src), f.read()))
    folders = set()
    started = time.perf_counter()
    for rel, data in files:
        out = os.path.join(dst, rel)
        folder = os.path.dirname(out)
        os.makedirs(folder, exist_ok=True)
        folders.add(folder)
        with open(out + ".tmp", "wb") as f:
            f.write(data)
        os.rename(out + ".tmp", out)
    secs = time.perf_counter() - started
    print(f"{len(files):,} files in {len(folders):,} leaf folders: {secs:.2f} s")


if __name__ == "__main__":
    main()
