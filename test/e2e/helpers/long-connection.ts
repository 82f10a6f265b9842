// Scripts for a long-lived TCP connection across the datapath (python3 in the endpoints' namespaces,
// sockets bound by hand): an echo server and a client that sends a message every 50 ms.

/** TCP echo server (threads); answers a first "GET " with an HTTP status line so connect() works too.
 *  When a peer closes, prints one JSON line: the peer and this side's total retransmissions. */
export const ECHO_SERVER = `
import json, socket, struct, sys, threading
ip, port = sys.argv[1], int(sys.argv[2])
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((ip, port))
srv.listen(16)
def serve(c, peer):
    first = True
    try:
        while True:
            d = c.recv(4096)
            if not d:
                break
            if first and d.startswith(b"GET "):
                c.sendall(b"HTTP/1.0 200 OK\\r\\n\\r\\n")
                break
            first = False
            c.sendall(d)
        info = c.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
        print(json.dumps({"peer": "%s:%d" % peer, "retrans": struct.unpack_from("I", info, 100)[0]}), flush=True)
    except OSError as e:
        print(json.dumps({"peer": "%s:%d" % peer, "error": str(e)}), flush=True)
    finally:
        c.close()
while True:
    c, peer = srv.accept()
    threading.Thread(target=serve, args=(c, peer), daemon=True).start()
`;

/** One connection, a 16-byte message every 50 ms echoed back (1 s timeout), until the stop file exists.
 *  Prints the count of echoes after each one, then one JSON summary. Stops at the first failure. */
export const LONG_CLIENT = `
import json, os, socket, struct, sys, time
ip, port, stop = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.create_connection((ip, port), timeout=2)
s.settimeout(1.0)
sent = ok = failures = 0
reason = None
max_rtt = 0.0
deadline = time.time() + 60
while not os.path.exists(stop) and time.time() < deadline:
    msg = ("%016d" % sent).encode()
    sent += 1
    t0 = time.time()
    try:
        s.sendall(msg)
        got = b""
        while len(got) < len(msg):
            chunk = s.recv(len(msg) - len(got))
            if not chunk:
                raise ConnectionResetError("connection closed by the peer")
            got += chunk
    except socket.timeout:
        failures += 1
        reason = "no echo within 1 s (message %d)" % sent
        break
    except OSError as e:
        failures += 1
        reason = "%s: %s" % (type(e).__name__, e)
        break
    if got != msg:
        failures += 1
        reason = "echo mismatch"
        break
    ok += 1
    max_rtt = max(max_rtt, time.time() - t0)
    print(ok, flush=True)
    time.sleep(0.05)
info = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
retrans = struct.unpack_from("I", info, 100)[0]
local = "%s:%d" % s.getsockname()
s.close()
print(json.dumps({"sent": sent, "ok": ok, "failures": failures, "reason": reason, "retrans": retrans, "maxRttMs": round(max_rtt * 1000, 2), "local": local}), flush=True)
`;

export interface ClientSummary {
  sent: number;
  ok: number;
  failures: number;
  reason: string | null;
  retrans: number;
  maxRttMs: number;
  local: string;
}
