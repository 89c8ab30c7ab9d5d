// Bundles src/main.tsx into the sessions package's static folder (app.js + app.css), so the
// gateway serves the pages without Node at run time. `--watch` rebuilds on change.
import * as esbuild from "esbuild";
import { fileURLToPath } from "node:url";

const outdir = fileURLToPath(new URL("../src/sessions/static/", import.meta.url));
const options = {
  entryPoints: { app: fileURLToPath(new URL("src/main.tsx", import.meta.url)) },
  outdir,
  bundle: true,
  minify: true,
  sourcemap: false,
  format: "iife",
  target: ["es2020", "chrome100", "firefox100", "safari15"],
  jsx: "automatic",
  jsxImportSource: "preact",
  legalComments: "none",
  metafile: true,
  logLevel: "info",
};

if (process.argv.includes("--watch")) {
  const ctx = await esbuild.context(options);
  await ctx.watch();
} else {
  const result = await esbuild.build(options);
  for (const [file, info] of Object.entries(result.metafile.outputs)) {
    if (!file.endsWith(".map")) console.log(`${file.split("/").pop()}: ${(info.bytes / 1024).toFixed(1)} KiB`);
  }
}
