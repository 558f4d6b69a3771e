"""Series ordering and grouping (labeling/dicom/series.py): PS3.3 C.7.6.2 geometry, fallbacks, flags."""

from __future__ import annotations

import random

import pytest

from labeling.dicom.series import SeriesError, SliceInfo, multiframe_task, order_series, series_tasks, slice_normal

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)


def axial(count: int, *, spacing: float = 2.5, z0: float = -100.0, skip: tuple[int, ...] = (),
          **kw) -> list[SliceInfo]:
    # InstanceNumber runs head to feet (z decreasing), as scanners usually number axial slices
    out = []
    for k in range(count):
        if k in skip:
            continue
        z = z0 - k * spacing
        out.append(SliceInfo(f"id-{k:03d}", sop_instance_uid=f"1.2.{k}", position=(-96.0, -96.0, z),
                             orientation=AXIAL, instance_number=k + 1, rows=96, columns=96,
                             pixel_spacing=(2.0, 2.0), **kw))
    return out


def test_shuffled_input_is_ordered_along_the_normal():
    slices = axial(40)
    shuffled = slices[:]
    random.Random(3).shuffle(shuffled)
    task = order_series("series-1", shuffled)
    # normal = row x column = +z, so increasing z: the last-numbered (lowest) slice first
    assert task.instances == tuple(s.instance_id for s in reversed(slices))
    g = task.geometry
    assert g["order"] == "position"
    assert g["normal"] == [0.0, 0.0, 1.0]
    assert g["spacing"] == 2.5
    assert g["slice_positions"][0] == pytest.approx(-100 - 39 * 2.5)
    assert g["slice_positions"] == sorted(g["slice_positions"])
    assert (g["rows"], g["columns"], g["pixel_spacing"]) == (96, 96, [2.0, 2.0])
    assert g["origin"] == [-96.0, -96.0, -100 - 39 * 2.5]
    assert task.flags == ()
    assert task.frames == 40 and task.level == "series" and task.source == "series-1"


def test_gap_is_flagged_not_reordered():
    task = order_series("s", axial(20, skip=(7,)))
    assert task.flag_codes == ("gap",)
    gap = task.flags[0]
    # ordered by increasing z, the missing slice 7 sits between ordered positions 11 and 12
    assert gap["pairs"] == [[11, 12]] and gap["spacing_mm"] == [5.0]
    assert task.geometry["spacing"] == 2.5
    assert len(task.instances) == 19


def test_mixed_orientation_is_flagged_and_falls_back_to_instance_number():
    slices = axial(10)
    localizer = SliceInfo("id-loc", position=(0.0, 0.0, 0.0), orientation=CORONAL, instance_number=0)
    shuffled = [slices[3], localizer, *slices[:3], *slices[4:]]
    task = order_series("s", shuffled)
    assert "mixed-orientation" in task.flag_codes
    assert task.geometry["order"] == "instance_number"
    assert task.instances == ("id-loc", *(s.instance_id for s in slices))
    assert task.geometry["normal"] is None and task.geometry["slice_positions"][0] is None


def test_missing_position_falls_back_to_instance_number_and_says_so():
    slices = axial(5)
    slices[2] = SliceInfo("id-002", instance_number=3)
    random.Random(1).shuffle(slices)
    task = order_series("s", slices)
    assert task.geometry["order"] == "instance_number"
    assert task.instances == tuple(f"id-{k:03d}" for k in range(5))
    assert task.flag_codes == ("no-position",)


def test_instance_number_fallback_puts_unnumbered_last_and_flags_them():
    slices = [SliceInfo("b", instance_number=2), SliceInfo("z"), SliceInfo("a", instance_number=1), SliceInfo("y")]
    task = order_series("s", slices)
    assert task.instances == ("a", "b", "y", "z")
    assert task.flag_codes == ("no-position", "no-instance-number")


def test_one_radiograph_is_a_series_without_flags():
    task = order_series("s", [SliceInfo("dx", rows=256, columns=256)])
    assert task.instances == ("dx",) and task.flags == () and task.geometry["order"] == "instance_number"


def test_duplicate_positions_are_kept_and_flagged():
    slices = axial(6)
    twin = SliceInfo("id-twin", position=slices[2].position, orientation=AXIAL, instance_number=99,
                     rows=96, columns=96, pixel_spacing=(2.0, 2.0))
    task = order_series("s", [*slices, twin])
    assert len(task.instances) == 7
    assert task.flag_codes == ("duplicate-position",)
    i = task.instances.index("id-twin")
    assert task.instances[i - 1] == "id-002"  # same position: InstanceNumber order
    assert task.geometry["spacing"] == 2.5


def test_mixed_size_is_flagged():
    slices = axial(4)
    slices[1] = SliceInfo("id-001", position=slices[1].position, orientation=AXIAL, instance_number=2,
                          rows=128, columns=96, pixel_spacing=(2.0, 2.0))
    task = order_series("s", slices)
    assert task.flag_codes == ("mixed-size",)
    assert task.geometry["rows"] is None


def test_oblique_normal_is_the_cross_product():
    # rows along +x, columns along (0, cos30, -sin30): normal = (0, sin30, cos30)
    import math
    c, s = math.cos(math.radians(30)), math.sin(math.radians(30))
    assert slice_normal((1, 0, 0, 0, c, -s)) == pytest.approx((0, s, c))
    with pytest.raises(SeriesError, match="parallel"):
        slice_normal((1, 0, 0, 1, 0, 0))


def test_multiframe_instances_get_their_own_task_with_frames_in_file_order():
    frames = tuple((0.0, 0.0, float(z)) for z in (0, 2, 4, 8, 10))
    multi = SliceInfo("mf", orientation=AXIAL, frames=5, rows=64, columns=64, frame_positions=frames,
                      instance_number=1)
    tasks = series_tasks("s", [*axial(3), multi])
    assert [t.level for t in tasks] == ["multiframe", "series"]
    mf = tasks[0]
    assert mf.source == "mf" and mf.instances == ("mf",) and mf.frames == 5
    assert mf.geometry["slice_positions"] == [0, 2, 4, 8, 10]
    assert mf.geometry["order"] == "frame"
    assert mf.flag_codes == ("gap",) and mf.flags[0]["pairs"] == [[2, 3]]
    assert tasks[1].instances == ("id-002", "id-001", "id-000")

    back = multiframe_task(SliceInfo("mf2", orientation=AXIAL, frames=3,
                                     frame_positions=((0, 0, 0), (0, 0, 4), (0, 0, 2))))
    assert "frames-not-monotonic" in back.flag_codes


def test_from_tags_reads_orthanc_strings_and_functional_groups():
    tags = {"ImagePositionPatient": "-96\\-96\\-100.5", "ImageOrientationPatient": "1\\0\\0\\0\\1\\0",
            "InstanceNumber": "7", "NumberOfFrames": "", "Rows": "96", "Columns": "96",
            "PixelSpacing": "2\\2", "SOPInstanceUID": "1.2.3"}
    info = SliceInfo.from_tags("x", tags)
    assert info.position == (-96.0, -96.0, -100.5) and info.orientation == AXIAL
    assert (info.instance_number, info.frames, info.pixel_spacing) == (7, 1, (2.0, 2.0))
    assert SliceInfo.from_tags("x", {"ImagePositionPatient": "1\\2"}).position is None

    enhanced = {"NumberOfFrames": "2", "SharedFunctionalGroupsSequence": [{
        "PlaneOrientationSequence": [{"ImageOrientationPatient": "1\\0\\0\\0\\1\\0"}],
        "PixelMeasuresSequence": [{"PixelSpacing": "0.5\\0.5"}]}],
        "PerFrameFunctionalGroupsSequence": [
            {"PlanePositionSequence": [{"ImagePositionPatient": "0\\0\\0"}]},
            {"PlanePositionSequence": [{"ImagePositionPatient": "0\\0\\1.5"}]}]}
    info = SliceInfo.from_tags("mf", enhanced)
    assert info.frames == 2 and info.orientation == AXIAL and info.pixel_spacing == (0.5, 0.5)
    assert info.frame_positions == ((0, 0, 0), (0, 0, 1.5))


def test_bad_input_names_the_instance():
    with pytest.raises(SeriesError, match="instance x: ImageOrientationPatient has 5 values"):
        SliceInfo("x", orientation=(1, 0, 0, 0, 1))
    with pytest.raises(SeriesError, match="no instances"):
        order_series("s", [])
    with pytest.raises(SeriesError, match=r"instance y: ImageOrientationPatient \[0, 0, 0, 0, 0, 0\]"):
        SliceInfo("y", orientation=(0, 0, 0, 0, 0, 0))
    # from Orthanc's tags a degenerate orientation is data from the wild: missing, then flagged
    wild = [SliceInfo.from_tags("a", {"ImageOrientationPatient": "0\\0\\0\\0\\0\\0", "InstanceNumber": "2",
                                      "ImagePositionPatient": "0\\0\\0"}),
            SliceInfo.from_tags("b", {"InstanceNumber": "1"})]
    assert wild[0].orientation is None
    task = order_series("s", wild)
    assert task.instances == ("b", "a") and task.flag_codes == ("no-position",)
