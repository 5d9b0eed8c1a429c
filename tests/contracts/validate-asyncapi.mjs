// Validates an AsyncAPI document with the official parser (@asyncapi/parser), as
// `asyncapi validate` does: exits non-zero on any diagnostic of severity error (0) or when no
// document is returned. Warnings are printed, not fatal.
//
//   node validate-asyncapi.mjs ../../proto-schemas/asyncapi.yaml
import { resolve } from "node:path";
import { Parser, fromFile } from "@asyncapi/parser";

const file = resolve(process.argv[2] ?? "../../proto-schemas/asyncapi.yaml");
const parser = new Parser();
const { document, diagnostics } = await fromFile(parser, file).parse();
const errors = diagnostics.filter((d) => d.severity === 0);
for (const d of diagnostics) {
  const level = ["error", "warning", "info", "hint"][d.severity] ?? d.severity;
  console.log(`${level}: ${d.code}: ${d.message} at ${d.path.join(".")}`);
}
if (!document || errors.length > 0) {
  console.error(`asyncapi: ${file}: ${errors.length} error(s)${document ? "" : ", no document"}`);
  process.exit(1);
}
console.log(`asyncapi: ${file}: valid AsyncAPI ${document.version()} (${document.channels().length} channels, ${document.messages().length} messages), ${diagnostics.length - errors.length} warning(s)`);
