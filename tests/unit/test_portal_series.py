"""Series items in the portal (labeling/portal/series.py): the slices of a line, the recorded geometry
read from a fake Orthanc, answers on the item's own slices, the task's slice list."""

from __future__ import annotations

import pytest

from labeling.contracts.schema import LabelSchema
from labeling.orthanc.client import OrthancError
from labeling.portal import series as S
from labeling.portal.jobs import Invalid, validate_answer

SERIES = "11111111-11111111-11111111-11111111-11111111"
A, B, C = ("aaaaaaaa-aaaaaaaa-aaaaaaaa-aaaaaaaa-aaaaaaa" + d for d in "abc")
MF = "mmmmmmmm-mmmmmmmm-mmmmmmmm-mmmmmmmm-mmmmmmmm".replace("m", "d")
SCHEMA = LabelSchema.from_dict({"name": "ct", "task_type": "classification+roi",
                                "labels": [{"name": "Nodule", "shapes": ["ellipse"]}]})


def line(level="series", **extra):
    base = {"source": SERIES if level == "series" else MF, "labels": ["Nodule"], "task_type": "classification+roi",
            "schema": "ct", "level": level, "instances": [A, B, C] if level == "series" else [MF], "frames": 3}
    return {**base, **extra}


class FakeOrthanc:
    def __init__(self, members=(A, B, C), frames=1):
        self.members, self.frames = list(members), frames

    def series(self, series_id):
        if series_id != SERIES:
            raise OrthancError(404, "unknown", "/series")
        return {"Instances": self.members}

    def instance_tags(self, instance_id):
        if instance_id not in (A, B, C, MF):
            raise OrthancError(404, "unknown", "/instances")
        return {"Rows": "64", "Columns": "48", "PixelSpacing": "0.5\\0.5",
                "NumberOfFrames": str(self.frames) if instance_id == MF else None}


def test_line_slices():
    assert S.line_slices(1, line()) == [(A, 0), (B, 0), (C, 0)]
    assert S.line_slices(1, line("multiframe")) == [(MF, 0), (MF, 1), (MF, 2)]


@pytest.mark.parametrize("data, message", [
    (line(instances=[]), "manifest line 4: 'instances' must list"),
    (line(instances=[A, "nope"]), r"'instances'\[1\] 'nope' is not an Orthanc instance ID"),
    (line(instances=[A, A]), "lists an instance twice"),
    (line(frames=5), "'frames' is 5 but 'instances' lists 3 slices"),
    (line("multiframe", instances=[A]), r"must be \[its source\]"),
    (line("multiframe", frames=0), "'frames' must be the instance's NumberOfFrames"),
])
def test_line_slices_names_what_is_wrong(data, message):
    with pytest.raises(Invalid, match=message):
        S.line_slices(4, data)


def test_recorded_geometry_and_refusals():
    found = S.read_series_geometry(FakeOrthanc(frames=3), [(1, line()), (2, line("multiframe"))])
    assert found.found[SERIES] == {"rows": 64, "columns": 48, "pixel_spacing": [0.5, 0.5], "frames": 3,
                                   "level": "series", "slices": [[A, 0], [B, 0], [C, 0]]}
    assert found.found[MF]["slices"] == [[MF, 0], [MF, 1], [MF, 2]] and found.found[MF]["frames"] == 3
    wrong = S.read_series_geometry(FakeOrthanc(members=(A, B), frames=2), [(1, line()), (2, line("multiframe"))])
    assert wrong.unreadable[SERIES].startswith("1 of its 3 instances are not in this series in Orthanc: " + C)
    assert wrong.unreadable[MF] == "Orthanc's instance has 2 frames, the line 3"
    other = "22222222-22222222-22222222-22222222-22222222"
    assert S.read_series_geometry(FakeOrthanc(), [(1, line(source=other))]).missing == [other]


def test_answers_must_lie_on_the_items_slices():
    geometry = S.read_series_geometry(FakeOrthanc(), [(1, line())]).found[SERIES]
    roi = {"label": "Nodule", "shape": "ellipse", "points": [[1, 1], [5, 5]]}
    ok = validate_answer(SCHEMA, {"labels": [{"name": "Nodule", "present": True}],
                                  "rois": [{**roi, "instance": B}]}, image=geometry)
    assert ok["rois"][0]["instance"] == B and ok["image"] == {"rows": 64, "columns": 48, "frame": 0}
    for rois, message in (([roi], r"rois\[0\].instance: required on a series item"),
                          ([{**roi, "instance": B}, {**roi, "instance": MF}],
                           rf"rois\[1\].instance: '{MF}' is not one of this item's 3 instances"),
                          ([{**roi, "instance": B, "frame": 1}], r"rois\[0\].frame: instance .* has no frame 1")):
        with pytest.raises(Invalid, match=message):
            validate_answer(SCHEMA, {"labels": [{"name": "Nodule", "present": True}], "rois": rois}, image=geometry)


def test_task_fields_and_order():
    geometry = {"rows": 4, "columns": 4, "frames": 2, "level": "multiframe", "slices": [[MF, 0], [MF, 1]]}
    fields = S.task_fields(lambda path: "http://portal" + path, 7, geometry)
    assert fields["slices"] == [{"url": f"http://portal/api/items/7/instances/{MF}", "instance": MF, "frame": f}
                                for f in (0, 1)]
    assert fields["image_url"] == fields["slices"][0]["url"] and fields["level"] == "multiframe"
    assert S.slice_order(geometry) == (MF,) and S.is_slice_of(geometry, MF) and not S.is_slice_of(geometry, A)
    image = {"rows": 4, "columns": 4, "frames": 1}
    assert S.task_fields(str, 7, image) == {} and S.slice_order(image) == () and not S.is_slice_of(image, A)


class SlowOrthanc:
    """Raw files for ImageStore.get, each fetch waiting for ``gate`` (so jobs stay pending)."""

    def __init__(self):
        import threading

        self.gate, self.fetched, self.threads = threading.Event(), [], set()

    def instance_file(self, instance_id):
        import threading

        self.threads.add(threading.get_ident())
        assert self.gate.wait(10)
        self.fetched.append(instance_id)
        return b"raw " + instance_id.encode()

    def close(self):
        self.gate.set()


def test_prefetch_of_a_series_runs_off_the_request_thread_once_and_bounded(tmp_path, monkeypatch):
    """A series' slices are checked and fetched in the prefetch threads as one job; the same job is
    not queued twice while it waits, and at most PREFETCH_PENDING jobs wait (labeling/portal/images.py)."""
    import threading
    import time

    from labeling.portal import images as I
    from labeling.portal.settings import PortalSettings

    orthanc = SlowOrthanc()
    store = I.ImageStore(PortalSettings(cache_dir=tmp_path, deidentify=False), lambda: orthanc, lambda: b"")
    monkeypatch.setattr(I, "PREFETCH_PENDING", 3)
    ids = [f"{n:08x}-aaaaaaaa-aaaaaaaa-aaaaaaaa-aaaaaaaa" for n in range(40)]
    try:
        store.prefetch(ids)  # returns at once: no slice is fetched in this thread
        store.prefetch(ids)  # the same job, still waiting: not queued again
        store.prefetch(ids[:1])
        store.prefetch(ids[1:2])
        store.prefetch(ids[2:3])  # a fourth job: over the bound, dropped
        assert orthanc.fetched == [] and len(store._pending) == 3
        orthanc.gate.set()
        deadline = time.monotonic() + 10
        while store._pending and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sorted(orthanc.fetched) == sorted(ids)  # each slice once (ids[:2] were also their own jobs)
        assert threading.get_ident() not in orthanc.threads
        assert all(store.path(i).read_bytes() == b"raw " + i.encode() for i in ids)
        store.prefetch(ids[:2])  # cached: nothing queued
        assert not store._pending
    finally:
        store.close()
