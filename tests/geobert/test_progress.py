from __future__ import annotations

import io
import itertools
import threading

from geobert._progress import LineProgress


def test_progress_lines_from_many_threads_stay_whole_and_increasing() -> None:
    out = io.StringIO()
    prog = LineProgress(out)
    prog.start(4000)

    def work(offset: int) -> None:
        for done in range(offset, 4001, 4):
            prog.update(done, 4000)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    prog.start(10)  # a second engine run (post-processing) continues above 90 %
    prog.update(5, 10)
    values = []
    for line in out.getvalue().splitlines():
        prefix, value = line.split(": ")
        assert prefix == "progress"
        values.append(float(value))
    assert all(a < b for a, b in itertools.pairwise(values))
    assert values[-2] == 90.0 and values[-1] == 94.5
