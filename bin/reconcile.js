#!/usr/bin/env node
// Development launcher: runs the TypeScript sources through tsx. Releases use the single binary
// built by `npm run build:binary` instead.
import { register } from "tsx/esm/api";

register();
await import("../reconciler/cli/main.ts");
