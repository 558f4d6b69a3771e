"""How large a GT series task gets, against each limit GT applies, per number of slices.

    .venv/bin/python bench/gt_series_size.py [--slices 1 64 200 425] [--token-chars 1000]

For a CT series of N slices (512², 64-character UIDs, positions as a scanner writes them) it builds
what each step really produces and measures it:

* ``line``: the ``manifest --level series`` line (:mod:`labeling.manifest.series`' keys:
  ``instances``, ``geometry`` with slice positions, ``flags``), its length and its largest attribute —
  GT's data-object limits bind here (:func:`labeling.gt.prelabel.series_size_problem`);
* ``answer``: the pre-annotation Lambda's answer (``taskInput`` with ``slices``), UTF-8 bytes, against
  :data:`labeling.gt.contracts.MAX_PRELABEL_RESPONSE_BYTES`;
* ``template``: the shipped worker template as uploaded (viewer placeholders filled), against
  :data:`labeling.gt.contracts.MAX_TEMPLATE_CHARS` — the same for every N;
* ``page``: the page rendered from it for the task, ``grant_read_access`` being a real SigV4
  presigned GET (botocore, 1 h) signed with temporary credentials whose session token has
  ``--token-chars`` characters (role sessions carry one; its length varies, ~1,000 is typical of an
  assumed role) — GT sets no limit on this page; it is printed to show why none may be applied locally.

Then the largest N whose line GT accepts (bisection). Sizes are deterministic: no timing, so the
machine's load does not matter.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from labeling.contracts.ids import orthanc_hash  # noqa: E402
from labeling.contracts.manifest_line import ManifestLine  # noqa: E402
from labeling.dicom.series import SliceInfo, series_tasks  # noqa: E402
from labeling.gt import contracts  # noqa: E402
from labeling.gt.render import render_template  # noqa: E402

BUCKET = "da-prod-staging-5f0c2e7"
JOB = "ct-nodules-2026-12-04"
UID_ROOT = "1.2.826.0.1.3680043.8.498."


def _uid(n: int) -> str:
    return (UID_ROOT + str(10 ** 37 + n * 7919))[:64]


def manifest_line(n: int) -> ManifestLine:
    """The series line ``manifest --level series`` writes for an axial CT series of ``n`` slices."""
    study, series = _uid(1), _uid(2)
    infos = [SliceInfo.from_tags(orthanc_hash(f"PAT|{study}|{series}|{_uid(100 + k)}"), {
        "SOPInstanceUID": _uid(100 + k), "ImagePositionPatient": f"-175.6572265625\\-338.6572265625\\{-12.5 - 1.25 * k}",
        "ImageOrientationPatient": "1\\0\\0\\0\\1\\0", "InstanceNumber": str(k + 1), "Rows": 512, "Columns": 512,
        "PixelSpacing": "0.686197916666667\\0.686197916666667"}) for k in range(n)]
    task = series_tasks(orthanc_hash(f"PAT|{study}|{series}"), infos)[-1]
    extra = {key: value for key, value in task.to_dict().items() if key != "frames"}
    return ManifestLine(source=task.source, labels=("Nodule",), task_type="classification+roi", schema="ct-nodule",
                        modality="CT", study_instance_uid=study, series_instance_uid=series, frames=task.frames,
                        rows=512, columns=512, extra=extra)


def task_input(line: ManifestLine) -> dict:
    """What the pre-label step answers for ``line`` (labeling/gt/prelabel.py, series tasks)."""
    slices = [{"image": f"s3://{BUCKET}/{JOB}/{i}.dcm", "instance": i, "frame": 0} for i in line.extra["instances"]]
    return {"image": slices[0]["image"], "source": line.source, "level": "series", "labels": list(line.labels),
            "task_type": line.task_type, "schema": line.schema,
            "image_geometry": {"rows": 512, "columns": 512, "frames": len(slices)}, "slices": slices}


def presigner(token_chars: int):
    import boto3

    session = boto3.session.Session(aws_access_key_id="ASIA" + "X" * 16, aws_secret_access_key="s" * 40,
                                    aws_session_token="T" * token_chars, region_name="eu-west-1")
    s3 = session.client("s3", config=__import__("botocore.config").config.Config(signature_version="s3v4"))

    def grant(uri):
        bucket, key = contracts.split_s3_uri(uri)
        return s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=3600)
    return grant


def line_problem(line: ManifestLine):
    try:
        from labeling.gt.prelabel import series_size_problem
    except ImportError:  # the GT data-object check lands with the series pre-label (issue 14, item 5)
        return None
    return series_size_problem(line.to_dict())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slices", type=int, nargs="+", default=[1, 64, 200, 425])
    parser.add_argument("--token-chars", type=int, default=1000, help="session token length (default 1000)")
    args = parser.parse_args()
    from labeling.gt.viewer_assets import fill_template

    template = fill_template((REPO / "labeling" / "gt" / "worker_template.liquid.html").read_text(encoding="utf-8"),
                             "https://d111111abcdef8.cloudfront.net/viewer/0123456789abcdef/", None, source="template")
    grant = presigner(args.token_chars)
    url = grant(f"s3://{BUCKET}/{JOB}/00000000-00000000-00000000-00000000-00000000.dcm")
    print(f"presigned URL: {len(url):,} characters (session token {args.token_chars:,}); template as uploaded: "
          f"{len(template):,} of {contracts.MAX_TEMPLATE_CHARS:,} characters, whatever the task")
    print(f"{'slices':>7} {'line':>9} {'largest attr':>13} {'answer B':>10} {'page chars':>11} {'page/slice':>10}  GT")
    for n in args.slices:
        line = manifest_line(n)
        data = line.to_dict()
        attr = max(data, key=lambda k: len(json.dumps(data[k], separators=(",", ":"))))
        attr_len = len(json.dumps(data[attr], separators=(",", ":")))
        task = task_input(line)
        answer = len(json.dumps({"taskInput": task, "isHumanAnnotationRequired": True},
                                separators=(",", ":")).encode())
        page = len(render_template(template, task, grant=grant))
        verdict = line_problem(line) or contracts.prelabel_response_problem(task) or "accepts"
        print(f"{n:>7} {len(line.to_json()):>9,} {attr + ' ' + format(attr_len, ','):>13} {answer:>10,} {page:>11,} "
              f"{page / n:>10,.0f}  {verdict[:60]}")
    if line_problem(manifest_line(1)) is None and line_problem(manifest_line(100_000 // 40)) is None:
        print("largest series: needs labeling.gt.prelabel.series_size_problem (GT's data-object limits)")
        return 0
    lo, hi = 1, 4096
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if line_problem(manifest_line(mid)) is None else (lo, mid - 1)
    print(f"largest series GT accepts as one task: {lo} slices ({line_problem(manifest_line(lo + 1))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
