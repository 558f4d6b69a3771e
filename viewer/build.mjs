// Build the viewer bundle with esbuild (docs/architecture.md, "Viewer build facts"):
//   node build.mjs [--outdir DIR]      (default: ../build/viewer, i.e. <repo>/build/viewer)
// Writes viewer.js (ESM, sets window.DicomAnnotateViewer), decodeImageFrameWorker.js (the image
// loader's decode worker, a second entry next to the bundle), the codec *.wasm files, and
// build-info.json (sizes, hashes, versions, build time). The worker's SHA-384 is compiled into
// viewer.js, which checks it before starting the worker (src/setup.js).
import { build } from 'esbuild';
import { createHash } from 'node:crypto';
import { copyFile, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const args = process.argv.slice(2);
const outIndex = args.indexOf('--outdir');
const outdir = path.resolve(outIndex >= 0 ? args[outIndex + 1] : path.join(here, '..', 'build', 'viewer'));
const started = performance.now();

const pkg = (name) => JSON.parse(require('node:fs').readFileSync(
  path.join(here, 'node_modules', ...name.split('/'), 'package.json'), 'utf8'));
const versions = Object.fromEntries(['@cornerstonejs/core', '@cornerstonejs/tools',
  '@cornerstonejs/dicom-image-loader', 'esbuild'].map((n) => [n, pkg(n).version]));

// The decode-path codecs; only the *decode* wasm builds are loaded by the image loader.
const WASM = [
  '@cornerstonejs/codec-charls/dist/charlswasm_decode.wasm',
  '@cornerstonejs/codec-openjpeg/dist/openjpegwasm_decode.wasm',
  '@cornerstonejs/codec-libjpeg-turbo-8bit/dist/libjpegturbowasm_decode.wasm',
  '@cornerstonejs/codec-libjxl/dist/jpegxlwasm_decode.wasm',
  '@cornerstonejs/codec-openjph/dist/openjphjs.wasm',
];

const common = {
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: ['chrome100', 'firefox100', 'safari15.4', 'edge100'],
  minify: true,
  legalComments: 'eof',
  logLevel: 'warning',
  // Only Node code paths of dependencies require these; they never run in a browser.
  external: ['fs', 'path'],
  // vtk.js pulls in xmlbuilder2, whose package entry is Node-only.
  alias: { xmlbuilder2: 'xmlbuilder2/lib/xmlbuilder2.min.js' },
  absWorkingDir: here,
};

const sha384 = (bytes) => `sha384-${createHash('sha384').update(bytes).digest('base64')}`;

await rm(outdir, { recursive: true, force: true });
await mkdir(outdir, { recursive: true });

// 1. The decode worker. It is started from a blob: URL (same-origin even when the bundle is not),
//    so its import.meta.url is replaced by a global the blob's first line sets to the real URL.
const workerEntry = path.join(here, 'node_modules', '@cornerstonejs', 'dicom-image-loader', 'dist', 'esm',
  'decodeImageFrameWorker.js');
await build({
  ...common,
  entryPoints: { decodeImageFrameWorker: workerEntry },
  outdir,
  define: { 'import.meta.url': 'globalThis.__DA_WORKER_BASE__' },
});
const workerBytes = await readFile(path.join(outdir, 'decodeImageFrameWorker.js'));

// 2. The viewer bundle, with the worker's hash and the version compiled in.
await build({
  ...common,
  entryPoints: { viewer: path.join(here, 'src', 'index.js') },
  outdir,
  define: {
    __DA_WORKER_SRI__: JSON.stringify(sha384(workerBytes)),
    __DA_VERSION__: JSON.stringify(JSON.parse(await readFile(path.join(here, 'package.json'), 'utf8')).version),
  },
});

// 3. The codecs, next to the bundle (wasmBasePath is the bundle's own directory).
for (const rel of WASM) {
  await copyFile(path.join(here, 'node_modules', rel), path.join(outdir, path.basename(rel)));
}

const files = {};
for (const name of ['viewer.js', 'decodeImageFrameWorker.js', ...WASM.map((w) => path.basename(w))]) {
  const bytes = await readFile(path.join(outdir, name));
  files[name] = { bytes: bytes.length, gzip: gzipSync(bytes, { level: 9 }).length, sri: sha384(bytes) };
}
const seconds = (performance.now() - started) / 1000;
await writeFile(path.join(outdir, 'build-info.json'),
  `${JSON.stringify({ versions, files, build_seconds: Number(seconds.toFixed(2)) }, null, 2)}\n`);
const kib = (n) => `${(n / 1024).toFixed(0)} KiB`;
for (const [name, f] of Object.entries(files)) {
  console.log(`${name.padEnd(32)} ${kib(f.bytes).padStart(9)}  gzip ${kib(f.gzip).padStart(9)}`);
}
console.log(`viewer built into ${outdir} in ${seconds.toFixed(1)} s`);

