"""`--path-map FROM=TO` and routing by what workers see: the worker's mapping (a map moves a path, it never widens
what a job may read), the HELLO field, and placement (a job goes only to a worker that sees its input, else it
waits saying so; lanes by the input's directory)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ffrtmp.errors import InvalidInput
from ffrtmp.master.nodes import check_hello
from ffrtmp.master.scheduler import NodeView, place, wait_reason, why_not
from ffrtmp.master.shared_storage import can_see, check_sees
from ffrtmp.master.store.dispatch import needs_key, needs_of
from ffrtmp.protocol import MAX_SEES, HelloBody, Kind
from ffrtmp.worker.pathmap import (
    PathMap,
    check_announced,
    parse_path_map,
    parse_path_maps,
    split_env,
    translate,
    visible_prefixes,
)
from ffrtmp.worker.sources import InputPolicy, SourceRefused, check_source
from tests.test_coordinator import Cluster

# ---- the worker's mapping ---------------------------------------------------------------------------------


def maps(*pairs: str) -> tuple[PathMap, ...]:
    return tuple(parse_path_map(pair) for pair in pairs)


@pytest.mark.parametrize(("given", "expected"), [
    ("/mnt/media/show/ep1.mkv", "/srv/media/show/ep1.mkv"),
    ("/mnt/media", "/srv/media"),
    ("/mnt/media2/ep1.mkv", None),  # whole components only
    ("/mnt/media/deep/x.mp4", "/fast/x.mp4"),  # the longest FROM wins
    ("/elsewhere/x.mp4", None),
    ("relative/x.mp4", None),  # relative inputs are looked up in the roots, never mapped
    ("/mnt/media/../../etc/passwd", None),  # a map gives '..' no meaning (jobspec refuses it anyway)
])
def test_a_path_is_mapped_by_its_longest_matching_from(given: str, expected: str | None) -> None:
    assert translate(given, maps("/mnt/media=/srv/media", "/mnt/media/deep=/fast")) == expected


def test_a_root_from_maps_every_absolute_path() -> None:
    assert translate("/a/b.mp4", maps("/=/mnt/remote")) == "/mnt/remote/a/b.mp4"


@pytest.mark.parametrize(("given", "problem"), [
    ("/mnt/media", "must be FROM=TO"),
    ("=/srv", "FROM is empty"),
    ("/mnt=", "TO is empty"),
    ("media=/srv/media", "FROM 'media' must be an absolute path"),
    ("/mnt=srv", "TO 'srv' must be an absolute path"),
    ("/mnt/../etc=/srv", "must not contain '..'"),
    ("/mnt\n=/srv", "control characters"),
])
def test_a_bad_map_is_a_clear_error_naming_the_flag(given: str, problem: str) -> None:
    with pytest.raises(InvalidInput) as error:
        parse_path_map(given)
    assert error.value.field == "path-map" and problem in str(error.value)


def test_to_may_hold_an_equals_sign_and_spaces_are_trimmed() -> None:
    assert parse_path_map(" /mnt/a = /srv/x=y ") == PathMap(PurePosixPath("/mnt/a"), PurePosixPath("/srv/x=y"))


def test_the_environment_separates_pairs_with_colons() -> None:
    assert split_env("/mnt/a=/srv/a:/mnt/b=/srv/b::") == ["/mnt/a=/srv/a", "/mnt/b=/srv/b"]


def test_a_map_to_outside_every_input_root_is_refused_at_start(tmp_path: Path) -> None:
    root = (tmp_path / "root").resolve()
    (root / "share").mkdir(parents=True)
    assert parse_path_maps([f"/mnt/share={root / 'share'}"], (root,))[0].target == PurePosixPath(root / "share")
    with pytest.raises(InvalidInput, match=r"not under any --input-root, .*\(add --input-root /srv/other\)"):
        parse_path_maps(["/mnt/share=/srv/other"], (root,))
    with pytest.raises(InvalidInput, match="mapped twice"):
        parse_path_maps([f"/mnt/share={root}", f"/mnt/share/={root / 'share'}"], (root,))
    (root / "out").symlink_to(tmp_path)  # a TO that leaves the root through a link is outside it
    with pytest.raises(InvalidInput, match="not under any --input-root"):
        parse_path_maps([f"/mnt/share={root / 'out'}"], (root,))


@pytest.fixture
def share(tmp_path: Path) -> tuple[Path, Path]:
    """(the input root, a clip in it at share/in/clip.mp4), and a secret beside the root reached by a link."""
    root = (tmp_path / "root").resolve()
    (root / "share" / "in").mkdir(parents=True)
    (root / "share" / "in" / "clip.mp4").write_bytes(b"\0" * 64)
    (tmp_path / "secret.txt").write_text("password\n")
    (root / "share" / "in" / "leak.mp4").symlink_to(tmp_path / "secret.txt")
    return root, root / "share" / "in" / "clip.mp4"


def test_a_mapped_input_is_read_under_to(share: tuple[Path, Path]) -> None:
    root, clip = share
    policy = InputPolicy(input_roots=(root,), path_maps=maps(f"/nfs/media={root / 'share'}"))
    assert check_source("/nfs/media/in/clip.mp4", policy) == str(clip)
    assert check_source(str(clip), policy) == str(clip)  # the worker's own path still reads, as without maps


@pytest.mark.parametrize("name", ["in/leak.mp4", "in/missing.mp4", "in"])
def test_a_mapped_path_meets_every_rule_of_a_local_input(share: tuple[Path, Path], name: str) -> None:
    root, _ = share
    policy = InputPolicy(input_roots=(root,), path_maps=maps(f"/nfs/media={root / 'share'}"))
    with pytest.raises(SourceRefused) as refused:
        check_source(f"/nfs/media/{name}", policy)
    assert str(refused.value) == (f"input {str(root / 'share' / name)!r} does not exist on this worker or is outside "
                                  f"its --input-root dirs (--path-map read '/nfs/media/{name}' as "
                                  f"{str(root / 'share' / name)!r})")


def test_a_map_checked_at_start_cannot_be_widened_later(share: tuple[Path, Path], tmp_path: Path) -> None:
    """Even a map whose TO is outside the roots (it never passes the start check) reads nothing out there."""
    root, _ = share
    policy = InputPolicy(input_roots=(root,), path_maps=maps(f"/nfs={tmp_path}"))
    with pytest.raises(SourceRefused, match="outside its --input-root"):
        check_source("/nfs/secret.txt", policy)


def test_a_worker_announces_its_roots_as_given_and_resolved_and_each_from(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "alias").symlink_to(real)
    sees = visible_prefixes([tmp_path / "alias"], maps(f"/nfs/media={real}"))
    assert sees == [str(tmp_path / "alias"), str(real.resolve()), "/nfs/media"]
    with pytest.raises(InvalidInput, match=f"at most {MAX_SEES}"):
        check_announced([f"/r{i}" for i in range(MAX_SEES + 1)])


# ---- HELLO's `sees` -----------------------------------------------------------------------------------------


def hello(**extra: Any) -> HelloBody:
    body: dict[str, Any] = {"name": "w1", "fingerprint": "f", "version": "t", "slots": 1, "engines": ["null"], **extra}
    return body  # type: ignore[return-value]


@pytest.mark.parametrize("sees", [
    "/shared", {"/shared": 1}, [1], [None], ["relative/dir"], [""], ["/a/../etc"], ["/a\x00b"], ["/a\nb"],
    ["/" + "x" * 5000], [f"/r{i}" for i in range(MAX_SEES + 1)], [["/nested"]],
])
def test_a_hostile_sees_field_is_refused_naming_it(sees: Any) -> None:
    with pytest.raises(InvalidInput) as error:
        check_hello(hello(sees=sees))
    assert error.value.field == "sees"


paths = st.one_of(st.text(max_size=30), st.text(max_size=30).map(lambda t: "/" + t),
                  st.sampled_from(["/", "//", "/a/./b", "/a//b/", "/../x", "/a/..", "/\u00e9t\u00e9", "/x" * 2100]))


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(sees=st.one_of(st.lists(paths, max_size=70), st.lists(st.one_of(st.integers(), st.none(), paths))))
def test_any_sees_is_either_refused_naming_it_or_a_bounded_list_of_clean_absolute_paths(sees: list[Any]) -> None:
    try:
        checked = check_sees(sees)
    except InvalidInput as error:
        assert error.field == "sees"
        return
    assert checked is not None and len(checked) <= MAX_SEES
    for path in checked:
        assert path.startswith("/") and ".." not in PurePosixPath(path).parts
    for directory in ("/", "/a/b", "", "/x"):
        can_see(checked, directory)  # never raises


def test_sees_is_normalised_and_optional() -> None:
    assert check_sees(["/shared/in/", "/shared/in", "/"]) == ("/shared/in", "/")
    assert check_sees(None) is None
    check_hello(hello())  # a worker from before `sees`


# ---- placement ------------------------------------------------------------------------------------------


def node(name: str, sees: tuple[str, ...] | None, free: int = 1) -> NodeView:
    return NodeView(name=name, slots=free, active=0, engines=frozenset({"null", "ffmpeg"}), sees=sees)


def job(job_id: str, source: str | None) -> dict[str, Any]:
    return {"id": job_id, "engine": "null", "params": {"input": source} if source else {}, "labels": {}}


@pytest.mark.parametrize(("source", "sees", "fits"), [
    ("/shared/in/a.mp4", ("/shared",), True),
    ("/shared/in/a.mp4", ("/shared/in",), True),
    ("/shared/in/a.mp4", ("/",), True),
    ("/shared/in/a.mp4", ("/shared/in/deeper",), False),
    ("/shared/in/a.mp4", ("/shared/i",), False),  # whole components only
    ("/shared/in/a.mp4", (), False),
    ("/shared/in/a.mp4", None, True),  # a worker from before `sees`: as before, anywhere
    ("in/a.mp4", ("/any/root",), True),  # a relative input is looked up in every root
    ("in/a.mp4", (), False),
    ("https://cdn.example.com/a.mp4", (), True),  # URLs and generated sources need no sight
    (None, (), True),
])
def test_a_node_fits_a_job_only_when_it_sees_its_input(source: str | None, sees: tuple[str, ...] | None,
                                                       fits: bool) -> None:
    assert (why_not(job("j", source), node("n", sees)) is None) == fits


def test_the_wait_reason_names_the_directory_and_what_to_do() -> None:
    nodes = [node("blind", ()), node("other", ("/elsewhere",))]
    assert wait_reason(job("j", "/shared/in/a.mp4"), nodes) == \
        "no connected worker can see /shared/in (add --input-root or --path-map)"
    assert wait_reason(job("j", "in/a.mp4"), [node("blind", ())]) == \
        "no connected worker can see relative input paths (add --input-root)"
    mixed = [node("blind", ()), NodeView("gst", 1, 0, frozenset({"gstreamer"}), sees=("/shared",))]
    assert wait_reason(job("j", "/shared/in/a.mp4"), mixed) == \
        "no connected worker has engine null / can see /shared/in (add --input-root or --path-map)"


def test_place_gives_each_job_to_a_worker_that_sees_it() -> None:
    nodes = [node("a", ("/mnt/a",), free=2), node("b", ("/mnt/b",), free=2)]
    jobs = [job("1", "/mnt/b/x.mp4"), job("2", "/mnt/a/x.mp4"), job("3", "/mnt/c/x.mp4"), job("4", "/mnt/b/y.mp4")]
    assignments, reasons = place(jobs, nodes)
    assert assignments == [("1", "b"), ("2", "a"), ("4", "b")]
    assert reasons == {"3": "no connected worker can see /mnt/c (add --input-root or --path-map)"}


def test_lanes_are_keyed_by_the_inputs_directory_and_other_keys_do_not_change() -> None:
    def key(source: str | None) -> str:
        return needs_key("ffmpeg", {"codec": "h264", **({"input": source} if source else {})}, {"gpu": "1"})

    assert key("/shared/in/a.mp4") == key("/shared/in/b.mp4") != key("/shared/in/sub/a.mp4")
    assert key(None) == key("https://cdn.example.com/a.mp4") == '["ffmpeg","h264",{"gpu":"1"}]'  # as before
    assert key("in/a.mp4") == key("other/b.mp4") != key(None)
    nodes = [node("root", ("/",)), node("shared", ("/shared",)), node("deep", ("/shared/in/sub",)),
             node("blind", ()), node("old", None)]
    for source in ("/shared/in/a.mp4", "/shared/in/sub/a.mp4", "in/a.mp4", None):
        group = needs_of(needs_key("null", {"input": source} if source else {}, {}))
        for one in nodes:  # the group's key decides exactly as each of its jobs does
            assert why_not(group, one) == why_not(job("j", source), one), (source, one.name)


# ---- the coordinator with a real store --------------------------------------------------------------------


def jobs_sent(cluster: Cluster, route: bytes) -> list[str]:
    return [m.body["job"] for m in cluster.net.take(route, Kind.JOB)]


def test_a_job_waits_for_a_worker_that_sees_it_and_blocks_no_other(tmp_path: Path) -> None:
    waits_then_runs(Cluster(tmp_path))


def test_the_same_on_postgresql(tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from ffrtmp.master.store.postgres import open_postgres_store
    from tests import test_coordinator

    monkeypatch.setattr(test_coordinator, "SqliteStore", lambda path, **_: open_postgres_store(postgres_url))
    cluster = Cluster(tmp_path)
    try:
        waits_then_runs(cluster)
    finally:
        cluster.store.close()


def waits_then_runs(cluster: Cluster) -> None:
    assert cluster.hello(b"blind", "blind", slots=4, sees=[])[0].kind is Kind.WELCOME
    unseen = [cluster.submit(input=f"/shared/in/{i}.mp4") for i in range(3)]
    generated = cluster.submit()
    assert jobs_sent(cluster, b"blind") == [generated]  # the waiting ones hold nobody up
    assert cluster.job(unseen[0])["reason"] == "no connected worker can see /shared/in (add --input-root or --path-map)"
    cluster.hello(b"sees", "sees", slots=4, sees=["/shared"])
    assert sorted(jobs_sent(cluster, b"sees")) == sorted(unseen)
    assert jobs_sent(cluster, b"blind") == []


def test_a_hello_with_a_hostile_sees_is_refused(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    replies = cluster.hello(b"bad", "bad", sees=["/ok", "not/absolute"])
    assert [m.kind for m in replies] == [Kind.REFUSED]
    assert replies[0].body["status"] == 400 and replies[0].body["error"].startswith("sees: ")
