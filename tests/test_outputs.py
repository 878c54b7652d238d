"""Where a job's file output goes: its own directory per tenant and job, attempt-scoped partial files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ffrtmp.worker.outputs import OutputRefused, discard, job_dir, plan, publish, resolve_output


def resolve(work: Path, output: str | None, *, tenant: str | None = "acme", job: str = "job-7",
            roots: tuple[Path, ...] = (), container: str = ".mp4") -> str:
    return resolve_output(work, roots, tenant, job, output, container)


def test_the_default_output_is_in_the_jobs_own_directory(tmp_path: Path) -> None:
    target = resolve(tmp_path / "work", None, container=".webm")
    assert target == str((tmp_path / "work" / "outputs" / "acme" / "job-7" / "job-7.webm").resolve())
    assert Path(target).parent.is_dir()


def test_a_job_without_a_tenant_uses_the_default_tenant(tmp_path: Path) -> None:
    assert Path(resolve(tmp_path, None, tenant=None)).parent == (tmp_path / "outputs" / "default" / "job-7").resolve()


def test_a_relative_output_is_taken_inside_the_jobs_directory(tmp_path: Path) -> None:
    target = resolve(tmp_path / "work", "a/b/c.mkv")
    assert target == str((tmp_path / "work" / "outputs" / "acme" / "job-7" / "a" / "b" / "c.mkv").resolve())


def test_another_jobs_default_output_cannot_be_named(tmp_path: Path) -> None:
    """M1: `--output outputs/<victim id>.mp4` (or the victim's full path) never reaches the victim's file."""
    work = tmp_path / "work"
    victim = Path(resolve(work, None, tenant="acme", job="victim"))
    victim.write_bytes(b"acme's video")
    for attempt in ("outputs/acme/victim/victim.mp4", "outputs/victim.mp4", "victim.mp4"):
        mine = Path(resolve(work, attempt, tenant="evil", job="evil-job"))
        assert mine != victim and (work / "outputs" / "evil" / "evil-job").resolve() in mine.parents
    for escape in ("../victim/victim.mp4", "../../acme/victim/victim.mp4", str(victim)):
        with pytest.raises(OutputRefused):
            resolve(work, escape, tenant="evil", job="evil-job", roots=(tmp_path,))
    assert victim.read_bytes() == b"acme's video"


def test_the_generated_source_cache_is_out_of_reach(tmp_path: Path) -> None:
    work = tmp_path / "work"
    for name in ("../../../inputs/testsrc2_320x240_10fps_20s.mp4", str(work / "inputs" / "x.mp4")):
        with pytest.raises(OutputRefused):
            resolve(work, name, roots=(tmp_path,))


@pytest.mark.parametrize("output", ["../../../../etc/x.mp4", "../outside.mp4", "a/../../b.mp4", "/etc/x.mp4"])
def test_escapes_are_refused(tmp_path: Path, output: str) -> None:
    with pytest.raises(OutputRefused):
        resolve(tmp_path / "work", output)


@pytest.mark.parametrize(("tenant", "job"), [("..", "j"), ("a/b", "j"), ("acme", ".."), ("acme", "x/../../y"),
                                             ("acme", "")])
def test_hostile_tenant_or_job_names_are_refused(tmp_path: Path, tenant: str, job: str) -> None:
    with pytest.raises(OutputRefused):
        job_dir(tmp_path, tenant, job)


def test_an_absolute_output_only_under_an_output_root(tmp_path: Path) -> None:
    root = tmp_path / "exports"
    assert resolve(tmp_path / "work", str(root / "day1" / "x.mp4"), roots=(root,)) == \
        str((root / "day1" / "x.mp4").resolve())
    with pytest.raises(OutputRefused, match="--output-root"):
        resolve(tmp_path / "work", str(root / "x.mp4"))


def test_siblings_with_the_same_prefix_and_dot_dot_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "exports"
    for outside in (tmp_path / "work2" / "x.mp4", tmp_path / "exports-evil" / "x.mp4"):
        with pytest.raises(OutputRefused):
            resolve(tmp_path / "work", str(outside), roots=(root,))
    with pytest.raises(OutputRefused):
        resolve(tmp_path / "work", f"{root}/../elsewhere/x.mp4", roots=(root,))


def test_a_symlink_out_of_the_jobs_directory_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    own = tmp_path / "work" / "outputs" / "acme" / "job-7"
    own.mkdir(parents=True)
    (own / "link").symlink_to(outside)
    with pytest.raises(OutputRefused):
        resolve(tmp_path / "work", "link/x.mp4")


@pytest.mark.parametrize("url", ["rtmp://live.example.com/app/key", "RTMPS://live.example.com/app/key"])
def test_stream_urls_pass_through(tmp_path: Path, url: str) -> None:
    assert resolve(tmp_path / "work", url) == url
    assert not (tmp_path / "work").exists()  # nothing created for a stream


def test_each_attempt_has_its_own_partial_with_the_suffix_last(tmp_path: Path) -> None:
    first, second = plan(str(tmp_path / "out.webm"), "job-7", 1), plan(str(tmp_path / "out.webm"), "job-7", 2)
    assert first.partial == str(tmp_path / "out.job-7.attempt-1.partial.webm")
    assert second.partial != first.partial and first.final == second.final == str(tmp_path / "out.webm")
    other_job = plan(str(tmp_path / "out.webm"), "job-8", 1)  # a shared output root: another job, same name
    assert other_job.partial != first.partial


def test_discard_deletes_only_a_partial_and_publish_replaces_the_final(tmp_path: Path) -> None:
    one = plan(str(tmp_path / "out.mp4"), "job-7", 1)
    Path(one.final).write_bytes(b"published earlier")
    discard(one.final)  # not a partial name: never deleted
    assert Path(one.final).exists()
    Path(one.partial).write_bytes(b"attempt 1")
    publish(one.partial, one.final)
    assert Path(one.final).read_bytes() == b"attempt 1" and not Path(one.partial).exists()
    discard(one.partial)  # already gone: no error
    assert os.listdir(tmp_path) == ["out.mp4"]
