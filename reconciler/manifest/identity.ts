// Schema of `kind: Identity`: pins a numeric security identity to a label set.

import type { IdentityManifest } from "./model.js";
import type { Field, Reader } from "./fields.js";
import { FORBIDDEN_ENDPOINT_SOURCES } from "./endpoint.js";

/** Smallest and largest identity an Identity manifest may pin (below 256: reserved identities). */
export const MIN_IDENTITY = 256;
export const MAX_IDENTITY = 65535;

export function readIdentity(r: Reader, doc: Field, name: string): IdentityManifest | undefined {
  const before = r.errorCount();
  const spec = r.child(doc, "spec");
  if (r.mapping(spec, true) === undefined) return undefined;
  r.onlyKeys(spec, ["id", "labels"]);
  const id = r.int(r.child(spec, "id"), MIN_IDENTITY, MAX_IDENTITY, true);
  const labelsField = r.child(spec, "labels");
  if (labelsField.value == null) {
    r.error(labelsField, "required field is missing (expected a mapping of labels)");
  }
  const labels = r.labelMap(labelsField, "k8s", FORBIDDEN_ENDPOINT_SOURCES);
  if (labels !== undefined && labels.length === 0 && labelsField.value != null) {
    r.error(labelsField, "empty label set (expected at least one label)");
  }
  if (r.errorCount() > before || id === undefined || labels === undefined) return undefined;
  return { kind: "Identity", name, id, labels, at: { file: r.file, line: doc.line } };
}
