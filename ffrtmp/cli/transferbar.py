"""Progress bars for uploads and fetches: on a terminal (stderr) only; a pipe or `--json` gets none."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from ffrtmp.cli.common import errors
from ffrtmp.client_files import ProgressFor
from ffrtmp.files.transfer import Progress as Callback


@contextlib.contextmanager
def transfer_bars(show: bool = True) -> Iterator[ProgressFor]:
    """Yields `progress_for(what)`: a callback drawing one bar per transfer, or None when nothing is shown."""
    if not show or not errors.is_terminal:
        yield lambda what: None
        return
    bars = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                    TimeRemainingColumn(), console=errors, transient=False)

    def progress_for(what: str) -> Callback:
        task = bars.add_task(what, total=None)

        def update(done: int, total: int) -> None:
            bars.update(task, completed=done, total=total)

        return update

    with bars:
        yield progress_for
