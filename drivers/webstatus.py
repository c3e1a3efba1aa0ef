# A live status page the guest serves to a browser: a small HTTP/1.1 server written on the
# socket API. The VirtIO devices with PCI address, transport and negotiated features; each
# virtqueue drawn as SVG (descriptor table, available and used rings, heads in flight, the
# indices), redrawn every second; the device and network counters; the same as JSON.
#
#   import webstatus; webstatus.serve(80)    # make run forwards a host port to it
#
#   GET /                  the page (HTML; its pictures reload themselves every second,
#                          ?refresh=<ms> to change that, 0 for a still page)
#   GET /svg/<dev>/<q>     one virtqueue as SVG
#   GET /api/status        devices, queues (indices, heads in flight), counters as JSON
#   GET /api/queue/<dev>/<q>   one virtqueue's descriptors and rings as JSON
#   GET /1k                1024 bytes of text (the benchmark's page)
#
# Every request gets its answer and the connection is closed (HTTP/1.1 allows it with
# "Connection: close", RFC 9112 section 9.6). The ring state is read by ring_state() only:
# the one place that knows the virtqueue objects' layout.

import struct

import virtio

REQUEST_TIMEOUT_S = 5
MAX_REQUEST = 4096
SERVER = "virtio-micropython"
REFRESH_MS = 1000
KIB_PAGE = (b"0123456789abcdef" * 63 + b"0123456789abcd\r\n")[:1024]

# Descriptor flags (spec 2.7.5 split, 2.8.1/2.8.2 packed)
F_NEXT = 1
F_WRITE = 2
F_INDIRECT = 4
F_PACKED_AVAIL = 1 << 7
F_PACKED_USED = 1 << 15


# ---- the adapter: everything the page knows about a virtqueue comes from here ----------

def ring_state(vq):
    """A virtqueue -> dict: layout, size, name, descriptors [(addr, len, flags, next/id)],
    the driver's and device's indices, the rings' entries, heads in flight. Read from the
    ring memory (spec 2.7 split, 2.8 packed) and the queue's public attributes."""
    hw = vq.hw
    n = vq.size
    s = {"name": vq.name, "size": n, "in_flight": vq.in_flight,
         "num_free": getattr(vq, "num_free", None),
         "owner": str(vq.owner) if getattr(vq, "owner", None) is not None else None}
    raw = hw.read(vq.desc, 16 * n)
    if hasattr(vq, "avail"):
        s["layout"] = "split"
        s["desc"] = [struct.unpack_from("<QIHH", raw, 16 * i) for i in range(n)]
        s["avail_flags"] = hw.read16(vq.avail)
        a_idx = hw.read16(vq.avail + 2)
        s["avail_idx"] = a_idx
        s["avail"] = [hw.read16(vq.avail + 4 + 2 * i) for i in range(n)]
        s["used_flags"] = hw.read16(vq.used)
        u_idx = hw.read16(vq.used + 2)
        s["used_idx"] = u_idx
        s["used"] = [(hw.read32(vq.used + 4 + 8 * i), hw.read32(vq.used + 8 + 8 * i))
                     for i in range(n)]
        # The driver's own used index; a driver that drives the ring itself (owner: net,
        # blk) keeps it elsewhere, and it is not shown.
        s["last_used"] = getattr(vq, "_last_used", None) if s["owner"] is None else None
        # Heads the driver made available and the device has not yet returned.
        k = (a_idx - u_idx) & 0xFFFF
        s["heads"] = [s["avail"][(u_idx + i) % n] for i in range(min(k, n))]
    else:
        s["layout"] = "packed"
        s["desc"] = [struct.unpack_from("<QIHH", raw, 16 * i) for i in range(n)]
        s["next_avail"] = getattr(vq, "_next_avail", None)
        s["next_used"] = getattr(vq, "_next_used", None)
        s["heads"] = [i for i in range(n) if s["desc"][i][3] & F_PACKED_AVAIL
                      and not (s["desc"][i][3] & F_PACKED_USED)]
    return s


# ---- JSON (MicroPython here has no json module) ---------------------------------------

def to_json(v):
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        out = ['"']
        for ch in v:
            o = ord(ch)
            if ch == '"' or ch == "\\":
                out.append("\\" + ch)
            elif o < 0x20:
                out.append("\\u%04x" % o)
            else:
                out.append(ch)
        out.append('"')
        return "".join(out)
    if isinstance(v, dict):
        return "{" + ",".join([to_json(str(k)) + ":" + to_json(v[k]) for k in v]) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join([to_json(x) for x in v]) + "]"
    return to_json(str(v))


# ---- what the page shows --------------------------------------------------------------

def _esc(text):
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def device_info(i, d):
    queues = []
    for qi, vq in enumerate(getattr(d, "queues", []) or []):
        if vq is None:
            continue
        st = ring_state(vq)
        q = {"index": qi, "layout": st["layout"], "size": st["size"],
             "in_flight": len(st["heads"]), "heads": st["heads"]}
        for k in ("avail_idx", "used_idx", "last_used", "next_avail", "next_used",
                  "num_free", "owner"):
            if k in st:
                q[k] = st[k]
        queues.append(q)
    info = {"index": i, "pci": d.pci.address if hasattr(d, "pci") else str(d.fn),
            "kind": getattr(d, "KIND", None), "name": getattr(d, "NAME", "virtio"),
            "transport": getattr(getattr(d, "transport", None), "name", None),
            "features": (d.feature_names() or "").split("|") if hasattr(d, "feature_names")
            else [], "queues": queues}
    counters = getattr(d, "counters", None)
    if counters is not None:
        info["counters"] = counters()
    return info


def status(stack=None):
    out = {"devices": [device_info(i, d) for i, d in enumerate(virtio.devices())]}
    if stack is not None:
        out["inet"] = {"address": str(stack), "stats": stack.stats, "drops": stack.drops,
                       "tcp": stack.tcp.stats, "connections": len(stack.tcp.conns)}
    return out


def queue_svg(st):
    """One virtqueue: descriptor table as a grid (in-flight heads filled), then the
    available and used rings with their indices marked."""
    n = st["size"]
    cols = 32 if n > 32 else n
    rows = (n + cols - 1) // cols
    cell = 18
    heads = set(st["heads"])
    chained = set()
    for h in heads:                            # follow each chain (split: next field)
        i = h
        for _ in range(n):
            flags, nxt = st["desc"][i][2], st["desc"][i][3]
            if st["layout"] != "split" or not flags & F_NEXT or nxt >= n:
                break
            chained.add(nxt)
            i = nxt
    w = 10 + cols * cell + 10
    y0 = 40
    h = y0 + rows * cell + (3 * (rows * cell + 40) if st["layout"] == "split" else 20)
    o = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
         'font-family="monospace" font-size="11">' % (w, h),
         '<rect width="100%" height="100%" fill="#fff"/>',
         '<text x="10" y="16" font-weight="bold">%s</text>' % _esc(st["name"]),
         '<text x="10" y="32">%s ring, size %d, %d in flight</text>'
         % (st["layout"], n, len(heads))]
    for i in range(n):
        x = 10 + (i % cols) * cell
        y = y0 + (i // cols) * cell
        d = st["desc"][i]
        fill = "#d33" if i in heads else ("#f99" if i in chained else
                                           ("#9cf" if d[1] else "#eee"))
        o.append('<rect x="%d" y="%d" width="%d" height="%d" fill="%s" stroke="#888">'
                 '<title>desc %d addr 0x%x len %d flags 0x%x next %d</title></rect>'
                 % (x, y, cell - 2, cell - 2, fill, i, d[0], d[1], d[2], d[3]))
    if st["layout"] == "split":
        y = y0 + rows * cell + 20
        y = _ring_svg(o, "avail idx %d" % st["avail_idx"], st["avail"], st["avail_idx"],
                      st["used_idx"], n, cols, cell, y, heads, False)
        _ring_svg(o, "used idx %d%s" % (st["used_idx"], "" if st["last_used"] is None else
                                         " (driver has seen %d)" % st["last_used"]),
                  [e[0] for e in st["used"]], st["used_idx"], st["last_used"], n, cols, cell,
                  y, heads, True)
    o.append("</svg>")
    return "".join(o)


def _ring_svg(o, title, entries, idx, other, n, cols, cell, y, heads, used):
    o.append('<text x="10" y="%d">%s</text>' % (y - 4, _esc(title)))
    pos = idx % n
    start = (other % n) if other is not None else pos
    for i in range(n):
        x = 10 + (i % cols) * cell
        yy = y + (i // cols) * cell
        # entries between the other side's index and ours are the live ones
        live = ((i - start) % n) < ((pos - start) % n)
        fill = ("#fc6" if used else "#d33") if live else "#eee"
        o.append('<rect x="%d" y="%d" width="%d" height="%d" fill="%s" stroke="%s">'
                 '<title>%d: %d</title></rect>' % (x, yy, cell - 2, cell - 2, fill,
                                                   "#000" if i == pos else "#888", i,
                                                   entries[i]))
    return y + ((n + cols - 1) // cols) * cell + 40


def page(stack=None, refresh_ms=REFRESH_MS):
    st = status(stack)
    o = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>virtio status</title>"
         "<style>body{font-family:sans-serif;margin:1em}td,th{padding:2px 8px;"
         "text-align:left}img{display:block;margin:6px 0}</style></head><body>",
         "<h1>VirtIO devices</h1>"]
    if stack is not None:
        o.append("<p>%s</p>" % _esc(st["inet"]["address"]))
    o.append("<table><tr><th>PCI</th><th>device</th><th>transport</th><th>features</th></tr>")
    for d in st["devices"]:
        o.append("<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>" % (
            _esc(d["pci"]), _esc(d["name"]), _esc(d["transport"]),
            _esc(" ".join(d["features"]))))
    o.append("</table>")
    for d in st["devices"]:
        for q in d["queues"]:
            o.append("<img class='q' alt='queue' src='/svg/%d/%d'>" % (d["index"], q["index"]))
        if "counters" in d:
            o.append("<p>%s counters: %s</p>" % (_esc(d["name"]), _esc(
                ", ".join(["%s %s" % (k, d["counters"][k]) for k in d["counters"]]))))
    if stack is not None:
        o.append("<p>TCP: %s</p>" % _esc(stack.tcp.summary()))
        o.append("<p>%s</p>" % _esc(stack.summary()))
    o.append("<p><a href='/api/status'>/api/status</a> (JSON)</p>")
    if refresh_ms:
        # Reload each picture once it has arrived: a slow guest is not flooded.
        o.append("<script>setInterval(function(){var t=Date.now();"
                 "document.querySelectorAll('img.q').forEach(function(i){if(i.complete)"
                 "i.src=i.src.split('?')[0]+'?'+t;});},%d);</script>" % refresh_ms)
    o.append("</body></html>")
    return "".join(o)


# ---- HTTP/1.1 (RFC 9112) ----------------------------------------------------------------

REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           408: "Request Timeout", 500: "Internal Server Error"}


def route(method, path, stack=None):
    """-> (status, content type, body bytes)."""
    if method not in ("GET", "HEAD"):
        return 405, "text/plain", b"only GET and HEAD\n"
    path, _, query = path.partition("?")
    if path == "/":
        # ?refresh=<ms> (0: a still picture, e.g. for a screenshot)
        refresh = REFRESH_MS
        for item in query.split("&"):
            k, _, v = item.partition("=")
            if k == "refresh" and v.isdigit():
                refresh = int(v)
        return 200, "text/html; charset=utf-8", page(stack, refresh).encode()
    if path == "/1k":
        return 200, "text/plain", KIB_PAGE
    if path == "/api/status":
        return 200, "application/json", to_json(status(stack)).encode()
    parts = path.strip("/").split("/")
    kind = None
    if len(parts) == 3 and parts[0] == "svg":
        kind, dev, q = "svg", parts[1], parts[2]
    elif len(parts) == 4 and parts[0] == "api" and parts[1] == "queue":
        kind, dev, q = "json", parts[2], parts[3]
    if kind is not None:
        vq = _queue(int(dev), int(q)) if dev.isdigit() and q.isdigit() else None
        if vq is None:
            return 404, "text/plain", b"no such queue\n"
        st = ring_state(vq)
        if kind == "svg":
            return 200, "image/svg+xml", queue_svg(st).encode()
        return 200, "application/json", to_json(st).encode()
    return 404, "text/plain", b"not found\n"


def _queue(dev, q):
    devs = virtio.devices()
    if dev >= len(devs):
        return None
    qs = getattr(devs[dev], "queues", None) or []
    return qs[q] if q < len(qs) else None


def read_request(conn):
    """-> (method, path) from the request line, the headers read and ignored; None if
    the client sent nothing usable."""
    buf = b""
    while b"\r\n\r\n" not in buf and b"\n\n" not in buf:
        chunk = conn.recv(1024)
        if not chunk:
            break
        buf += chunk
        if len(buf) > MAX_REQUEST:
            return None
    line = buf.split(b"\n", 1)[0].strip().split()
    if len(line) != 3 or not line[2].startswith(b"HTTP/"):
        return None
    return line[0].decode(), line[1].decode()


def respond(conn, code, ctype, body, head=False):
    hdr = ("HTTP/1.1 %d %s\r\nServer: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
           "Cache-Control: no-store\r\nConnection: close\r\n\r\n"
           % (code, REASONS[code], SERVER, ctype, len(body)))
    conn.sendall(hdr.encode() + (b"" if head else body))


def handle(conn, stack=None):
    conn.settimeout(REQUEST_TIMEOUT_S)
    try:
        req = read_request(conn)
        if req is None:
            return respond(conn, 400, "text/plain", b"bad request\n")
        try:
            code, ctype, body = route(req[0], req[1], stack)
        except Exception as e:              # the page must not take the server down
            code, ctype, body = 500, "text/plain", ("%r\n" % e).encode()
        respond(conn, code, ctype, body, req[0] == "HEAD")
    except OSError:
        pass                                # the client went away or timed out
    finally:
        conn.close()


def serve(port=80, count=0, sock_module=None, stack=None, idle_s=0):
    """Serve the status page on port until `count` requests were answered (0: for ever),
    or no request came for idle_s seconds (0: wait for ever). -> the number answered."""
    if sock_module is None:
        import socket as sock_module
    if stack is None and hasattr(sock_module, "get_stack"):
        stack = sock_module.get_stack()
    s = sock_module.socket(sock_module.AF_INET, sock_module.SOCK_STREAM)
    s.setsockopt(sock_module.SOL_SOCKET, sock_module.SO_REUSEADDR, 1)
    s.bind(("", port))
    s.listen(8)
    if idle_s:
        s.settimeout(idle_s)
    print("webstatus: serving http://%s:%d/" % (
        stack.ip and ".".join([str(b) for b in stack.ip]) if stack else "0.0.0.0", port))
    served = 0
    try:
        while not count or served < count:
            try:
                conn, _ = s.accept()
            except OSError:
                if idle_s:
                    break                   # idle for idle_s: done
                raise
            handle(conn, stack)
            served += 1
    finally:
        s.close()
    return served
