"""Shared by the benchmark scripts: print each row as a JSON line as it comes, then write them all."""
from __future__ import annotations

import json
from typing import Iterable, Optional


def emit(rows: Iterable[dict], output: Optional[str]) -> list[dict]:
    """Print each row (one JSON line, flushed: long runs show progress); write the list to
    ``output`` when given. Returns the rows."""
    done = []
    for row in rows:
        done.append(row)
        print(json.dumps(row), flush=True)
    if output:
        with open(output, "w") as f:
            json.dump(done, f, indent=2)
    return done
