import { defineConfig } from "vite";

// Served by certplane at /portal/ (server/portal.c): hashed files under
// assets/ (immutable there), index.html revalidated.
export default defineConfig({
  base: "/portal/",
  oxc: { jsx: { runtime: "automatic", importSource: "preact" } },
  build: { outDir: "dist", assetsDir: "assets", sourcemap: false, target: "es2022" },
});
