#!/usr/bin/env node
// Parse an AsyncAPI document with the official parser (@asyncapi/parser, the engine behind the
// AsyncAPI CLI, Studio and generators), resolving every $ref the way those tools do.
//
//   node tests/contracts/asyncapi-check.js contracts/asyncapi.json
//   node tests/contracts/asyncapi-check.js http://127.0.0.1:8001/asyncapi
//   node tests/contracts/asyncapi-check.js --json <file-or-url>...  (one JSON report per line, for tests/)
//
// Exit code: 0 when every document parses with no error and no warning, 1 otherwise, 2 on a crash.
'use strict';

const { Parser, fromFile, fromURL } = require('@asyncapi/parser');

const SEVERITY = ['error', 'warning', 'information', 'hint'];

async function check(source) {
  const parser = new Parser();
  const input = /^https?:\/\//.test(source) ? fromURL(parser, source) : fromFile(parser, source);
  const { document, diagnostics } = await input.parse();
  const report = {
    source,
    parsed: document !== undefined,
    diagnostics: diagnostics.map((d) => ({
      severity: SEVERITY[d.severity],
      code: String(d.code),
      path: d.path.join('/'),
      message: d.message,
    })),
    version: null,
    channels: [],
    messages: [],
  };
  if (document) {
    report.version = document.version();
    report.channels = document.channels().all().map((c) => c.address());
    // What a code generator sees of each payload once every reference is resolved.
    report.messages = document.allMessages().all().map((m) => {
      const payload = m.payload();
      const data = payload && payload.properties() && payload.properties().data;
      return {
        name: m.name(),
        payloadId: payload ? payload.$id() : null,
        dataProperties: data && data.properties() ? Object.keys(data.properties()).sort() : [],
      };
    });
  }
  return report;
}

function failed(report) {
  return !report.parsed || report.diagnostics.some((d) => d.severity === 'error' || d.severity === 'warning');
}

async function main(argv) {
  const json = argv.includes('--json');
  const sources = argv.filter((a) => a !== '--json');
  if (sources.length === 0) {
    process.stderr.write('usage: asyncapi-check.js [--json] <file-or-url>...\n');
    return 2;
  }
  let code = 0;
  for (const source of sources) {
    const report = await check(source);
    if (json) {
      process.stdout.write(JSON.stringify(report) + '\n');
    } else {
      print(report);
    }
    if (failed(report)) code = 1;
  }
  return code;
}

function print(report) {
  for (const d of report.diagnostics) {
    process.stdout.write(`${d.severity} ${d.code} ${d.path || '(root)'}: ${d.message}\n`);
  }
  const count = (s) => report.diagnostics.filter((d) => d.severity === s).length;
  process.stdout.write(
    `${report.source}: AsyncAPI ${report.version}, ${report.channels.length} channels, ` +
      `${report.messages.length} messages, ${count('error')} errors, ${count('warning')} warnings\n`,
  );
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`${err && err.stack ? err.stack : err}\n`);
    process.exit(2);
  },
);
