"""ffrtmp.master.scheduler: pure placement of pending jobs on nodes with free slots."""

from __future__ import annotations

from typing import Any

from ffrtmp.master.scheduler import NodeView, encoder_fits, engine_fits, place, wait_reason, why_not

X264 = ("h264", "libx264")
GST_X264 = ("h264", "x264enc")


def node(name: str, slots: int = 1, active: int = 0, engines: tuple[str, ...] = ("ffmpeg",),
         codecs: tuple[str, ...] = X264, cpu: float = 0.0, accepting: bool = True,
         gst_codecs: tuple[str, ...] | None = None, **labels: str) -> NodeView:
    """`codecs` are the node's FFmpeg ones; GStreamer nodes get `gst_codecs` (x264enc by default)."""
    if gst_codecs is None:
        gst_codecs = GST_X264 if "gstreamer" in engines else ()
    return NodeView(name=name, slots=slots, active=active, engines=frozenset(engines), labels=labels,
                    codecs={"ffmpeg": frozenset(codecs), "gstreamer": frozenset(gst_codecs)}, cpu=cpu,
                    accepting=accepting)


def job(job_id: str, engine: str = "auto", codec: str | None = "h264", labels: dict[str, str] | None = None,
        avoid: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"id": job_id, "engine": engine, "params": {"codec": codec}, "labels": labels or {},
            "avoid": list(avoid)}


# ---- place ------------------------------------------------------------------------------------------


def test_dispatch_order_is_preserved() -> None:
    jobs = [job("c"), job("a"), job("b")]
    assignments, reasons = place(jobs, [node("n1", slots=3)])
    assert assignments == [("c", "n1"), ("a", "n1"), ("b", "n1")]
    assert reasons == {}


def test_only_as_many_jobs_as_free_slots_in_order() -> None:
    assignments, _ = place([job("j1"), job("j2"), job("j3")], [node("n1", slots=2)])
    assert assignments == [("j1", "n1"), ("j2", "n1")]


def test_unrunnable_job_is_skipped_without_blocking_the_ones_behind() -> None:
    jobs = [job("gpu", codec="h264_nvenc"), job("cpu1"), job("cpu2")]
    assignments, reasons = place(jobs, [node("n1", slots=2)])
    assert assignments == [("cpu1", "n1"), ("cpu2", "n1")]
    assert reasons == {"gpu": "no connected worker has a usable h264_nvenc encoder"}


def test_label_requirement_is_skipped_with_reason() -> None:
    jobs = [job("edge", labels={"zone": "edge"}), job("any")]
    assignments, reasons = place(jobs, [node("n1", zone="core")])
    assert assignments == [("any", "n1")]
    assert reasons == {"edge": "no connected worker has label zone=edge"}


def test_label_requirement_met_by_one_node() -> None:
    nodes = [node("a-core", zone="core"), node("b-edge", zone="edge")]
    assignments, _ = place([job("edge", labels={"zone": "edge"})], nodes)
    assert assignments == [("edge", "b-edge")]


def test_nodes_without_free_slots_get_nothing() -> None:
    nodes = [node("full", slots=2, active=2), node("free", slots=1)]
    assignments, _ = place([job("j1"), job("j2")], nodes)
    assert assignments == [("j1", "free")]


def test_node_not_accepting_gets_nothing() -> None:
    draining = node("draining", slots=4, accepting=False)
    assert draining.free == 0
    assignments, _ = place([job("j1")], [draining])
    assert assignments == []


def test_no_free_slot_anywhere_places_nothing() -> None:
    assignments, reasons = place([job("j1")], [node("n1", active=1)])
    assert assignments == []
    assert reasons == {}


def test_no_nodes_places_nothing() -> None:
    assert place([job("j1")], []) == ([], {})


def test_least_loaded_node_wins_by_active_ratio() -> None:
    nodes = [node("busy", slots=4, active=3), node("idle", slots=4, active=1)]
    assignments, _ = place([job("j1")], nodes)
    assert assignments == [("j1", "idle")]


def test_load_ratio_not_absolute_active_count() -> None:
    nodes = [node("small", slots=2, active=1), node("big", slots=8, active=2)]
    assignments, _ = place([job("j1")], nodes)
    assert assignments == [("j1", "big")]


def test_cpu_breaks_a_load_tie() -> None:
    nodes = [node("hot", slots=2, cpu=90.0), node("cool", slots=2, cpu=10.0)]
    assignments, _ = place([job("j1")], nodes)
    assert assignments == [("j1", "cool")]


def test_name_breaks_a_full_tie_deterministically() -> None:
    assignments, _ = place([job("j1")], [node("b"), node("a")])
    assert assignments == [("j1", "a")]


def test_jobs_spread_over_nodes_as_load_changes() -> None:
    nodes = [node("a", slots=2), node("b", slots=2)]
    assignments, _ = place([job("j1"), job("j2"), job("j3"), job("j4"), job("j5")], nodes)
    assert assignments == [("j1", "a"), ("j2", "b"), ("j3", "a"), ("j4", "b")]
    assert (nodes[0].active, nodes[1].active) == (2, 2)


def test_avoided_node_is_skipped_while_another_fits() -> None:
    nodes = [node("a", slots=4), node("b", slots=4, active=3)]
    assignments, _ = place([job("j1", avoid=("a",))], nodes)
    assert assignments == [("j1", "b")]


def test_avoided_node_is_used_when_it_is_the_only_one() -> None:
    assignments, reasons = place([job("j1", avoid=("a",))], [node("a")])
    assert assignments == [("j1", "a")]
    assert reasons == {}


def test_avoided_node_is_used_when_the_others_do_not_fit() -> None:
    nodes = [node("a"), node("b", engines=("null",))]
    assignments, _ = place([job("j1", avoid=("a",))], nodes)
    assert assignments == [("j1", "a")]


def test_engine_auto_fits_ffmpeg_or_gstreamer_but_not_null_only() -> None:
    nodes = [node("nul", engines=("null",)), node("gst", engines=("gstreamer",))]
    assignments, _ = place([job("j1", engine="auto")], nodes)
    assert assignments == [("j1", "gst")]
    assignments, reasons = place([job("j2", engine="auto")], [node("nul", engines=("null",))])
    assert assignments == []
    assert reasons == {"j2": "no connected worker has engine auto"}


def test_specific_engine_needs_that_engine() -> None:
    nodes = [node("ff", engines=("ffmpeg",)), node("gst", engines=("gstreamer",))]
    assignments, _ = place([job("j1", engine="gstreamer")], nodes)
    assert assignments == [("j1", "gst")]


def test_null_engine_skips_the_codec_check() -> None:
    nodes = [node("nul", engines=("null",), codecs=())]
    assignments, _ = place([job("j1", engine="null", codec="h264_nvenc")], nodes)
    assert assignments == [("j1", "nul")]


def test_job_without_codec_needs_no_encoder() -> None:
    assignments, _ = place([job("j1", codec=None)], [node("n1", codecs=())])
    assert assignments == [("j1", "n1")]


# ---- why_not and engine_fits ------------------------------------------------------------------------


def test_engine_fits() -> None:
    assert engine_fits("auto", node("n", engines=("ffmpeg",)))
    assert engine_fits("auto", node("n", engines=("gstreamer", "null")))
    assert not engine_fits("auto", node("n", engines=("null",)))
    assert engine_fits("null", node("n", engines=("null",)))
    assert not engine_fits("null", node("n", engines=("ffmpeg",)))
    assert not engine_fits("ffmpeg", node("n", engines=()))


def test_why_not_none_when_it_fits_even_without_free_slots() -> None:
    assert why_not(job("j"), node("n", active=1)) is None


def test_why_not_names_what_is_missing() -> None:
    assert why_not(job("j", engine="gstreamer"), node("n")) == "engine gstreamer"
    assert why_not(job("j", labels={"gpu": "yes"}), node("n", gpu="no")) == "label gpu=yes"
    assert why_not(job("j", labels={"gpu": "yes"}), node("n")) == "label gpu=yes"
    assert why_not(job("j", codec="av1"), node("n")) == "a usable av1 encoder"
    assert why_not(job("j", engine="ffmpeg", codec="av1"), node("n")) == "a usable av1 encoder for ffmpeg"
    gst = node("g", engines=("ffmpeg", "gstreamer"))
    assert why_not(job("j", engine="gstreamer", codec="h265"), gst) == "a usable h265 encoder for gstreamer"


def test_why_not_engine_checked_before_codec() -> None:
    assert why_not(job("j", engine="gstreamer", codec="av1"), node("n")) == "engine gstreamer"


# ---- wait_reason ------------------------------------------------------------------------------------


def test_wait_reason_no_worker() -> None:
    assert wait_reason(job("j"), []) == "no worker is connected"


def test_wait_reason_waiting_for_a_free_slot() -> None:
    assert wait_reason(job("j"), [node("n", active=1)]) == "waiting for a free slot"


def test_wait_reason_draining_node_that_fits_means_waiting() -> None:
    assert wait_reason(job("j"), [node("n", accepting=False)]) == "waiting for a free slot"


def test_wait_reason_lists_what_no_worker_has() -> None:
    nodes = [node("a"), node("b", engines=("null",)), node("c")]
    reason = wait_reason(job("j", codec="h264_nvenc"), nodes)
    assert reason == "no connected worker has a usable h264_nvenc encoder / engine auto"


def test_wait_reason_accepts_any_iterable() -> None:
    assert wait_reason(job("j"), iter([node("n", active=1)])) == "waiting for a free slot"


def test_unfit_job_behind_full_nodes_reports_slot_wait_when_a_busy_node_fits() -> None:
    nodes = [node("gpu", active=1, codecs=("h264_nvenc",)), node("cpu")]
    assignments, reasons = place([job("g", codec="h264_nvenc"), job("c")], nodes)
    assert assignments == [("c", "cpu")]
    assert reasons == {"g": "waiting for a free slot"}


# ---- codecs per engine ------------------------------------------------------------------------------


def test_a_named_gpu_encoder_goes_to_the_node_that_has_it() -> None:
    nodes = [node("cpu", slots=4), node("gpu", codecs=(*X264, "h264_nvenc"))]
    assignments, reasons = place([job("g", codec="h264_nvenc")], nodes)
    assert assignments == [("g", "gpu")]
    assert reasons == {}


def test_gpu_jobs_wait_without_blocking_the_cpu_jobs_behind_them() -> None:
    jobs = [job("nv1", codec="h264_nvenc"), job("c1"), job("nv2", engine="gstreamer", codec="nvh264enc"), job("c2"),
            job("c3", engine="ffmpeg")]
    nodes = [node("cpu-a", slots=2, engines=("ffmpeg", "gstreamer")), node("cpu-b", slots=2)]
    assignments, reasons = place(jobs, nodes)
    assert [job_id for job_id, _ in assignments] == ["c1", "c2", "c3"]
    assert reasons == {"nv1": "no connected worker has a usable h264_nvenc encoder",
                       "nv2": "no connected worker has a usable nvh264enc encoder for gstreamer / engine gstreamer"}


def test_the_codec_must_be_usable_in_the_job_engine() -> None:
    ff_only = node("ff", engines=("ffmpeg", "gstreamer"), codecs=(*X264, "h265", "libx265"))
    assert why_not(job("j", engine="ffmpeg", codec="h265"), ff_only) is None
    assert why_not(job("j", engine="gstreamer", codec="h265"), ff_only) == "a usable h265 encoder for gstreamer"
    assert why_not(job("j", engine="auto", codec="h265"), ff_only) is None  # auto: FFmpeg can do it


def test_auto_fits_a_codec_only_gstreamer_has() -> None:
    gst = node("gst", engines=("ffmpeg", "gstreamer"), gst_codecs=(*GST_X264, "h265", "x265enc"))
    assert why_not(job("j", engine="auto", codec="h265"), gst) is None
    assert why_not(job("j", engine="ffmpeg", codec="h265"), gst) == "a usable h265 encoder for ffmpeg"


def test_encoder_names_are_per_engine() -> None:
    both = node("both", engines=("ffmpeg", "gstreamer"))
    assert encoder_fits("x264enc", "gstreamer", both)
    assert encoder_fits("x264enc", "auto", both)
    assert not encoder_fits("x264enc", "ffmpeg", both)
    assert encoder_fits("libx264", "ffmpeg", both)
    assert not encoder_fits("libx264", "gstreamer", both)


def test_codecs_of_an_engine_the_node_does_not_offer_do_not_count() -> None:
    # A worker started with --engines ffmpeg may still report GStreamer elements: they must not attract jobs.
    ff = node("ff", engines=("ffmpeg",), gst_codecs=GST_X264)
    assert not encoder_fits("h264", "gstreamer", ff)
    assert why_not(job("j", engine="gstreamer"), ff) == "engine gstreamer"


def test_gstreamer_jobs_go_to_gstreamer_nodes_least_loaded_first() -> None:
    nodes = [node("ff", slots=4), node("gst-busy", slots=2, active=1, engines=("ffmpeg", "gstreamer")),
             node("gst-idle", slots=2, engines=("gstreamer",))]
    assignments, _ = place([job("g1", engine="gstreamer"), job("g2", engine="gstreamer")], nodes)
    assert assignments == [("g1", "gst-idle"), ("g2", "gst-busy")]


def test_wait_reason_for_a_gstreamer_codec_nobody_has() -> None:
    nodes = [node("a", engines=("ffmpeg", "gstreamer")), node("b", engines=("gstreamer",))]
    reason = wait_reason(job("j", engine="gstreamer", codec="vp9"), nodes)
    assert reason == "no connected worker has a usable vp9 encoder for gstreamer"


# ---- what the master derives from a worker's HELLO --------------------------------------------------


def test_node_session_codecs_are_grouped_by_engine() -> None:
    from ffrtmp.master.nodes import NodeSession

    session = NodeSession(name="n", fingerprint="f", route=b"r", slots=1, engines=frozenset({"ffmpeg", "gstreamer"}),
                          encoders={
                              "libx264": {"codec": "h264", "available": True, "engine": "ffmpeg"},
                              "h264_nvenc": {"codec": "h264", "available": False, "engine": "ffmpeg"},
                              "x264enc": {"codec": "h264", "available": True, "engine": "gstreamer"},
                              "x265enc": {"codec": "h265", "available": True, "engine": "gstreamer"},
                              "libvpx-vp9": {"codec": "vp9", "available": True},  # from a worker before GStreamer
                              "junk": "not a map",
                          })
    assert session.codecs() == {"ffmpeg": frozenset({"libx264", "h264", "libvpx-vp9", "vp9"}),
                                "gstreamer": frozenset({"x264enc", "h264", "x265enc", "h265"})}
    view = session.view()
    assert encoder_fits("h265", "gstreamer", view)
    assert not encoder_fits("h265", "ffmpeg", view)
    assert not encoder_fits("h264_nvenc", "auto", view)
