// Schema of `kind: Endpoint` (DESIGN §3): a workload interface on a node.

import type { EndpointManifest, InterfaceCreate, NamedPort } from "./model.js";
import { isServiceName, NAMED_PORT_PROTOCOLS } from "./rule.js";
import { isIfName, parseMac, type Field, type Reader } from "./fields.js";
import { parseIPv4, parseIPv6 } from "./ip.js";
import { readEnforcementAnnotation } from "./enforcement.js";

/** Label sources an endpoint may not carry: they are selector wildcards or assigned by the system. */
export const FORBIDDEN_ENDPOINT_SOURCES = ["any", "reserved", "cidr", "fqdn"] as const;

const NETNS_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/** Read an Endpoint document (envelope already checked by load.ts). */
export function readEndpoint(r: Reader, doc: Field, name: string): EndpointManifest | undefined {
  const before = r.errorCount();
  const labels = r.labelMap(r.child(r.child(doc, "metadata"), "labels"), "k8s", FORBIDDEN_ENDPOINT_SOURCES);
  const audit = readEnforcementAnnotation(r, r.child(doc, "metadata")) === "audit";
  const spec = r.child(doc, "spec");
  if (r.mapping(spec, true) === undefined) return undefined;
  r.onlyKeys(spec, ["node", "ipv4", "ipv6", "mac", "interface", "ports"]);
  const ports = readNamedPorts(r, r.child(spec, "ports"));

  const node = r.name(r.child(spec, "node"), false);
  const ipv4Field = r.child(spec, "ipv4");
  const ipv4 = r.ipv4(ipv4Field);
  if (ipv4 !== undefined && !isUnicastV4(ipv4)) {
    r.error(ipv4Field, `not a unicast address (expected an endpoint address, got "${ipv4}")`);
  }
  const ipv6Field = r.child(spec, "ipv6");
  const ipv6 = r.ipv6(ipv6Field);
  if (ipv6 !== undefined && !isUnicastV6(ipv6)) {
    r.error(ipv6Field, `not a unicast address (expected an endpoint address, got "${ipv6}")`);
  }
  if (ipv4Field.value == null && ipv6Field.value == null) {
    r.error(spec, "an endpoint needs an address (expected ipv4 or ipv6 or both, got neither)");
  }
  const macField = r.child(spec, "mac");
  const macText = r.string(macField);
  let mac: string | undefined;
  if (macText !== undefined) {
    mac = parseMac(macText);
    if (mac === undefined) {
      r.error(macField, `invalid MAC address (expected a unicast address like 02:00:00:00:00:01, got "${macText}")`);
    }
  }

  const iface = r.child(spec, "interface");
  let interfaceName: string | undefined;
  let create: InterfaceCreate | undefined;
  if (r.mapping(iface, true) !== undefined) {
    r.onlyKeys(iface, ["name", "create"]);
    interfaceName = r.formatted(r.child(iface, "name"), isIfName, IFNAME_EXPECTED, true);
    create = readCreate(r, r.child(iface, "create"));
  }

  if (r.errorCount() > before || interfaceName === undefined || labels === undefined) return undefined;
  const ep: EndpointManifest = { kind: "Endpoint", name, interfaceName, labels, at: { file: r.file, line: doc.line } };
  if (node !== undefined) ep.node = node;
  if (ipv4 !== undefined) ep.ipv4 = ipv4;
  if (ipv6 !== undefined) ep.ipv6 = ipv6;
  if (mac !== undefined) ep.mac = mac;
  if (create !== undefined) ep.create = create;
  if (ports !== undefined) ep.ports = ports;
  if (audit) ep.audit = true;
  return ep;
}

/** spec.ports: `[{name, port, protocol}]`, the endpoint's named ports (like a pod's container
 *  ports); protocol defaults to TCP as in Kubernetes. Names are unique per endpoint. */
function readNamedPorts(r: Reader, f: Field): NamedPort[] | undefined {
  const items = r.list(f);
  if (items === undefined) return undefined;
  const out: NamedPort[] = [];
  const seen = new Set<string>();
  for (const it of items) {
    if (r.mapping(it, true) === undefined) continue;
    r.onlyKeys(it, ["name", "port", "protocol"]);
    const nameField = r.child(it, "name");
    const name = r.formatted(nameField, isServiceName, "a port name: 1..15 letters, digits and '-', at least one letter, no '-' at either end or twice in a row", true);
    const port = r.int(r.child(it, "port"), 1, 65535, true);
    const protoField = r.child(it, "protocol");
    const protoText = (r.string(protoField) ?? "TCP").toUpperCase();
    if (!(NAMED_PORT_PROTOCOLS as readonly string[]).includes(protoText)) {
      r.error(protoField, `unknown protocol (expected one of ${NAMED_PORT_PROTOCOLS.join(", ")}, got ${JSON.stringify(protoText)})`);
      continue;
    }
    if (name === undefined || port === undefined) continue;
    const lower = name.toLowerCase();
    if (seen.has(lower)) {
      r.error(nameField, `duplicate port name ${lower} (expected each name once per endpoint)`);
      continue;
    }
    seen.add(lower);
    out.push({ name: lower, port, protocol: protoText as NamedPort["protocol"] });
  }
  return out;
}

export const IFNAME_EXPECTED = "an interface name of 1..15 printable characters without '/', ':' or spaces";

function readCreate(r: Reader, f: Field): InterfaceCreate | undefined {
  if (r.mapping(f) === undefined) return undefined;
  r.onlyKeys(f, ["netns", "ifname", "kind", "parent"]);
  const netns = r.formatted(r.child(f, "netns"), (s) => NETNS_RE.test(s), "a namespace name of letters, digits, '_', '.', '-' (at most 64)", true);
  const ifnameField = r.child(f, "ifname");
  const ifname = ifnameField.value === undefined ? "eth0" : r.formatted(ifnameField, isIfName, IFNAME_EXPECTED, true);
  const kindField = r.child(f, "kind");
  const kindText = r.string(kindField) ?? "veth";
  const parentField = r.child(f, "parent");
  const parent = r.formatted(parentField, isIfName, IFNAME_EXPECTED);
  if (kindText !== "veth" && kindText !== "macvlan") {
    r.error(kindField, `unknown interface kind (expected veth or macvlan, got "${kindText}")`);
    return undefined;
  }
  if (kindText === "macvlan" && parentField.value == null) {
    r.error(f, "macvlan needs a parent device (expected create.parent, got nothing)");
    return undefined;
  }
  if (kindText === "veth" && parentField.value != null) {
    r.error(parentField, 'parent is only for kind macvlan (expected no parent for kind "veth")');
    return undefined;
  }
  if (netns === undefined || ifname === undefined) return undefined;
  const c: InterfaceCreate = { kind: kindText, netns, ifname };
  if (parent !== undefined) c.parent = parent;
  return c;
}

function isUnicastV4(ip: string): boolean {
  const b = parseIPv4(ip)!;
  return !(b[0] === 0 || b[0] === 127 || b[0]! >= 224);
}

function isUnicastV6(ip: string): boolean {
  const b = parseIPv6(ip)!;
  const zero = b.every((x) => x === 0);
  const loopback = b.slice(0, 15).every((x) => x === 0) && b[15] === 1;
  return !(zero || loopback || b[0] === 0xff);
}
