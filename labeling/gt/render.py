"""``python -m labeling gt render``: the worker template rendered locally as GT renders it, with a
``<crowd-form>`` stand-in and an optional preview server (the behaviour is described in
:mod:`labeling.gt.cli`)."""

from __future__ import annotations

import argparse
import json
import re
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Optional

from labeling.gt.contracts import MAX_TEMPLATE_CHARS, GtError, prelabel_response_problem, split_s3_uri

_CROWD_ELEMENTS_SCRIPT_RE = re.compile(
    r"<script[^>]*\bsrc=[\"']https://assets\.crowd\.aws/crowd-html-elements\.js[\"'][^>]*>\s*</script>",
    re.I)


CROWD_FORM_STAND_IN = """<script id="gt-crowd-form-stand-in">
/* Local stand-in for GT's <crowd-form> (python -m labeling gt render): collects the named fields on
   submit into window.__submitted (object) and window.__submittedContent (the JSON string GT stores
   as annotationData.content). */
(function () {
  function collect(form) {
    var out = {};
    var fields = form.querySelectorAll('input[name], select[name], textarea[name]');
    Array.prototype.forEach.call(fields, function (el) {
      var type = (el.type || '').toLowerCase();
      if (type === 'checkbox') { out[el.name] = !!el.checked; }
      else if (type === 'radio') { if (el.checked) { out[el.name] = el.value; }
                                   else if (!(el.name in out)) { out[el.name] = null; } }
      else if (type === 'submit' || type === 'button') { return; }
      else { out[el.name] = el.value; }
    });
    return out;
  }
  function submit(form) {
    var event = new Event('submit', {cancelable: true});
    if (!form.dispatchEvent(event)) { return null; }
    var content = collect(form);
    window.__submitted = content;
    window.__submittedContent = JSON.stringify(content);
    window.dispatchEvent(new CustomEvent('crowd-form-submitted', {detail: content}));
    return content;
  }
  if (!customElements.get('crowd-form')) {
    customElements.define('crowd-form', class extends HTMLElement {
      connectedCallback() {
        var self = this;
        if (this.__standIn) { return; }
        this.__standIn = true;
        this.addEventListener('click', function (e) {
          var t = e.target.closest('crowd-button[form-action="submit"], button[type="submit"], input[type="submit"]');
          if (t && self.contains(t)) { e.preventDefault(); submit(self); }
        });
        if (!this.querySelector('crowd-button[form-action="submit"], button[type="submit"], input[type="submit"]')) {
          var button = document.createElement('button');
          button.type = 'submit';
          button.id = 'crowd-form-submit';
          button.textContent = 'Submit';
          this.appendChild(button);
        }
      }
      submit() { return submit(this); }
    });
  }
  if (!customElements.get('crowd-button')) {
    customElements.define('crowd-button', class extends HTMLElement {
      connectedCallback() {
        if (!this.hasAttribute('role')) { this.setAttribute('role', 'button'); }
        if (!this.hasAttribute('tabindex')) { this.setAttribute('tabindex', '0'); }
        this.style.cursor = 'pointer';
      }
    });
  }
})();
</script>
"""


def grant_read_access_url(uri: Any, asset_base: Optional[str] = None) -> Any:
    """The local stand-in for GT's ``grant_read_access`` (see the module docstring)."""
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        return uri
    try:
        bucket, key = split_s3_uri(uri, "grant_read_access")
    except ValueError:
        return uri
    quoted = urllib.parse.quote(key, safe="/")
    if asset_base:
        return f"{asset_base.rstrip('/')}/{quoted}"
    return f"https://{bucket}.s3.amazonaws.com/{quoted}"


def granted_uris(task_input: Mapping[str, Any]) -> list[str]:
    """The ``s3://`` URIs a page of this task grants, once each in page order: ``image`` (or
    ``source-ref``), then each of a series task's ``slices[].image``."""
    found = [task_input.get("image"), task_input.get("source-ref")]
    slices = task_input.get("slices")
    if isinstance(slices, list):
        found += [s.get("image") for s in slices if isinstance(s, Mapping)]
    return list(dict.fromkeys(u for u in found if isinstance(u, str) and u.startswith("s3://")))


class AssetDir:
    """``gt render --asset-dir DIR``: what ``/assets/KEY`` serves for ``s3://bucket/KEY``.

    ``DIR/KEY`` when it exists; else, when KEY ends in ``<orthanc instance id>.dcm`` (the key the
    pre-label step stages a slice under, :func:`labeling.gt.prelabel.staging_key`), the DICOM file under
    DIR whose Orthanc instance ID that is (:func:`labeling.contracts.ids.orthanc_instance_id` of its
    PatientID and UIDs) — so a folder as ``python -m devkit synth`` or an Orthanc export writes it
    previews a staged series task without renaming a file."""

    def __init__(self, root: Path) -> None:
        if not Path(root).is_dir():
            raise GtError(f"--asset-dir {root}: not a directory")
        self.root = Path(root).resolve()
        self._by_id: Optional[dict[str, Path]] = None

    def _index(self) -> dict[str, Path]:
        if self._by_id is None:
            import pydicom

            from labeling.contracts.ids import orthanc_instance_id

            tags = ["PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"]
            self._by_id = {}
            for path in sorted(self.root.rglob("*.dcm")):
                try:
                    ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=tags)
                    key = orthanc_instance_id(*(str(ds.get(tag, "")) for tag in tags))
                except Exception:  # noqa: BLE001 - not DICOM, or unreadable: it simply is no candidate
                    continue
                self._by_id.setdefault(key, path)
        return self._by_id

    def resolve(self, uris: list[str]) -> dict[str, Path]:
        """KEY → file for every URI; one :class:`GtError` naming the first missing ones otherwise."""
        from labeling.contracts.ids import ORTHANC_ID

        files: dict[str, Path] = {}
        missing: list[str] = []
        for uri in uris:
            try:
                _, key = split_s3_uri(uri, "task input")
            except ValueError as exc:
                raise GtError(str(exc)) from None
            direct = (self.root / key).resolve()
            stem = Path(key).name[:-len(".dcm")] if key.endswith(".dcm") else ""
            if self.root in direct.parents and direct.is_file():
                files[key] = direct
            elif ORTHANC_ID.fullmatch(stem) and stem in self._index():
                files[key] = self._index()[stem]
            else:
                missing.append(uri)
        if missing:
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            raise GtError(f"--asset-dir {self.root}: no file for {len(missing)} of the task's {len(uris)} "
                          f"images: {', '.join(missing[:3])}{more} (looked for DIR/KEY, then for a DICOM file "
                          f"under DIR whose Orthanc instance ID is the key's <id>.dcm)")
        return files


def _to_json(value: Any) -> str:
    """GT's ``to_json``; a missing key (Liquid ``Undefined``) gives ``null`` rather than an error."""
    from liquid import Undefined

    if isinstance(value, Undefined):
        value = None
    return json.dumps(value, ensure_ascii=False)


def render_template(template_text: str, task_input: Mapping[str, Any], *,
                    asset_base: Optional[str] = None, source: str = "<template>",
                    grant: Optional[Callable[[Any], Any]] = None) -> str:
    """Render a GT worker template locally; raises :class:`GtError` for an oversize/bad template.
    ``grant`` replaces the ``grant_read_access`` stand-in (e.g. a real S3 presigner, to measure a page)."""
    if len(template_text) > MAX_TEMPLATE_CHARS:
        raise GtError(f"{source}: template is {len(template_text):,} characters; Ground Truth "
                      f"accepts at most {MAX_TEMPLATE_CHARS:,} (load large code from the asset location)")
    from liquid import Environment, Markup
    from liquid.exceptions import LiquidError

    env = Environment(autoescape=True)
    env.filters["grant_read_access"] = grant or (lambda value: grant_read_access_url(value, asset_base))
    env.filters["to_json"] = _to_json
    env.filters["skip_autoescape"] = lambda value: Markup("" if value is None else str(value))
    try:
        html = env.from_string(template_text).render(task={"input": dict(task_input)})
    except LiquidError as exc:
        raise GtError(f"{source}: Liquid error: {' '.join(str(exc).split())}") from None
    return inject_crowd_form_stand_in(html)


def inject_crowd_form_stand_in(html: str) -> str:
    """Drop GT's crowd-html-elements.js and add the stand-in script before ``</body>`` (or at the end)."""
    html = _CROWD_ELEMENTS_SCRIPT_RE.sub(
        "<!-- crowd-html-elements.js replaced by the local stand-in (labeling gt render) -->", html)
    index = html.lower().rfind("</body>")
    if index < 0:
        return html.rstrip("\n") + "\n" + CROWD_FORM_STAND_IN
    return html[:index] + CROWD_FORM_STAND_IN + html[index:]


def _read_json(path: str, what: str) -> Any:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise GtError(f"{path}: cannot read {what}: {reason}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise GtError(f"{path}:{exc.lineno}: {what} is not valid JSON ({exc.msg})") from None


def cmd_render(args: argparse.Namespace) -> int:
    try:
        template_text = Path(args.template).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise GtError(f"{args.template}: cannot read template: {reason}") from None
    task_input = _read_json(args.task_input, "task input")
    if isinstance(task_input, Mapping) and isinstance(task_input.get("taskInput"), Mapping):
        task_input = task_input["taskInput"]  # a whole pre-annotation response
    if not isinstance(task_input, Mapping):
        raise GtError(f"{args.task_input}: task input must be a JSON object (the taskInput), "
                      f"got {type(task_input).__name__}")
    too_large = prelabel_response_problem(task_input)
    if too_large:
        raise GtError(f"{args.task_input}: {too_large}")
    from labeling.gt.viewer_assets import VIEWER_BUILD_DIR, ViewerAssetsError, default_base_url, fill_template

    if args.out is None and args.serve is None:
        raise GtError("give --out HTML_FILE, --serve, or both")
    assets = None
    if args.asset_dir is not None and args.serve is not None:
        assets = AssetDir(args.asset_dir).resolve(granted_uris(task_input))
    server = _PreviewServer(args.viewer_dir or VIEWER_BUILD_DIR, args.asset_dir, assets) \
        if args.serve is not None else None
    viewer_base = args.viewer_base_url or (server.url("/viewer/") if server else default_base_url(args.viewer_dir))
    asset_base = args.asset_base or (server.url("/assets") if server and args.asset_dir else None)
    try:
        template_text = fill_template(template_text, viewer_base, args.viewer_dir, source=args.template)
        html = with_charset(render_template(template_text, task_input, asset_base=asset_base,
                                            source=args.template))
        if args.out is not None:
            try:
                Path(args.out).write_text(html, encoding="utf-8")
            except OSError as exc:
                raise GtError(f"{args.out}: cannot write: {exc.strerror or exc}") from None
            print(f"rendered {args.template} → {args.out} ({len(html):,} characters)")
    except (ViewerAssetsError, GtError) as exc:
        if server:
            server.close()
        raise GtError(str(exc)) from None
    if server:
        server.serve(html, seconds=args.serve)
    return 0


def with_charset(html: str) -> str:
    """The preview page declares UTF-8 (GT's page does; without it "256 × 256" shows as "256 Ã— 256")."""
    if re.search(r"<meta[^>]+charset", html[:4096], re.I):
        return html
    head = re.search(r"<head[^>]*>", html, re.I)
    tag = '<meta charset="utf-8">'
    return html[:head.end()] + tag + html[head.end():] if head else tag + "\n" + html


class _PreviewServer:
    """``gt render --serve``: the page at ``/``, the viewer build at ``/viewer/``, ``--asset-dir`` at
    ``/assets/`` (the task's images as :class:`AssetDir` resolved them first); on 127.0.0.1 only, for a
    bounded time (or until Ctrl-C)."""

    def __init__(self, viewer_dir: Path, asset_dir: Optional[Path],
                 assets: Optional[Mapping[str, Path]] = None) -> None:
        import http.server

        roots = {"/viewer/": Path(viewer_dir).resolve()}
        if asset_dir is not None:  # checked by AssetDir first
            roots["/assets/"] = Path(asset_dir).resolve()
        staged = {f"/assets/{key}": path for key, path in (assets or {}).items()}
        self.page = b""
        preview = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def translate_path(self, path: str) -> str:
                clean = urllib.parse.unquote(path.split("?", 1)[0])
                if clean in staged:
                    return str(staged[clean])
                for prefix, root in roots.items():
                    if clean.startswith(prefix):
                        target = (root / clean[len(prefix):]).resolve()
                        if target == root or root in target.parents:  # never outside the root
                            return str(target)
                return ""

            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] not in ("/", "/index.html") and not self.translate_path(self.path):
                    self.send_error(404)
                    return
                if self.path.split("?", 1)[0] in ("/", "/index.html"):
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                    self.send_header("Content-Length", str(len(preview.page)))
                    self.end_headers()
                    self.wfile.write(preview.page)
                    return
                super().do_GET()

            def log_message(self, *args: Any) -> None:  # keep the terminal for the one status line
                pass

        Handler.extensions_map = {**Handler.extensions_map, ".js": "text/javascript", ".mjs": "text/javascript",
                                  ".wasm": "application/wasm", ".dcm": "application/dicom"}
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._serving = False

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def serve(self, html: str, seconds: float) -> None:
        import threading

        self.page = html.encode("utf-8")
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        self._serving = True
        print(f"preview: open {self.url('/')} (127.0.0.1 only; stops in {seconds:.0f} s or on Ctrl-C)",
              flush=True)
        try:
            thread.join(timeout=seconds)
        except KeyboardInterrupt:
            pass
        finally:
            self.close()
        print("preview: stopped")

    def close(self) -> None:
        if self._serving:
            self._server.shutdown()
            self._serving = False
        self._server.server_close()
