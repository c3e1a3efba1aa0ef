"""The status page (drivers/webstatus.py) on the host: the devices are Python models on a
probed Machine, the page is served by our own TCP and socket API to Python's http.client
through real slirp and a hostfwd (as in the image, minus the image)."""

import http.client
import json
import threading
import xml.etree.ElementTree as ET

import pytest

import virtio
import webstatus
from inet import sockets as gsock
from tests.host.models import BlkModel, Machine, RngModel
from tests.host.models.net import NetModel
from tests.host.test_tcp_slirp import GUEST_PORT, net  # noqa: F401 - the fixture


@pytest.fixture
def machine():
    m = Machine([BlkModel(), NetModel(mode="modern"), RngModel(mode="modern")])
    virtio.probe(m)
    return m


def test_status_json_lists_devices_features_and_queues(machine):
    blk = virtio.find("blk")
    blk.read(0, 1)
    code, ctype, body = webstatus.route("GET", "/api/status")
    assert code == 200 and ctype == "application/json"
    st = json.loads(body)
    devs = {d["kind"]: d for d in st["devices"]}
    assert set(devs) == {"blk", "net", "rng"}
    assert devs["net"]["transport"] == "modern"
    assert "VERSION_1" in devs["net"]["features"] and "MAC" in devs["net"]["features"]
    assert devs["net"]["pci"] == virtio.find("net").pci.address
    q = devs["blk"]["queues"][0]
    assert q["layout"] == "split" and q["avail_idx"] == q["used_idx"] >= 1
    rxq = devs["net"]["queues"][0]
    assert rxq["in_flight"] == virtio.find("net").rx_posted     # receive buffers posted
    assert devs["net"]["counters"]["rx_packets"] == 0


def test_queue_svg_marks_heads_in_flight(machine):
    net = virtio.find("net")
    code, ctype, body = webstatus.route("GET", "/svg/1/0")
    assert code == 200 and ctype == "image/svg+xml"
    svg = ET.fromstring(body)
    rects = svg.findall("{http://www.w3.org/2000/svg}rect")
    size = net.receiveq.size
    # background + descriptor table + avail ring + used ring
    assert len(rects) == 1 + 3 * size
    desc = rects[1:1 + size]
    assert sum(r.get("fill") == "#d33" for r in desc) == net.rx_posted
    js = json.loads(webstatus.route("GET", "/api/queue/1/0")[2])
    assert len(js["desc"]) == size and len(js["heads"]) == net.rx_posted
    assert webstatus.route("GET", "/svg/9/0")[0] == 404
    assert webstatus.route("POST", "/")[0] == 405
    assert webstatus.route("GET", "/nothing")[0] == 404


def test_json_encoder_escapes():
    v = {"a": [1, 2.5, None, True, False], "s": 'q"\\\n\x01é'}
    assert json.loads(webstatus.to_json(v)) == v


def test_page_served_over_our_tcp_to_http_client(machine, net):  # noqa: F811
    _, stack, fwd = net
    results = {}

    def client():
        try:
            for path in ("/", "/api/status", "/svg/0/0", "/1k", "/missing"):
                c = http.client.HTTPConnection("127.0.0.1", fwd, timeout=20)
                c.request("GET", path)
                r = c.getresponse()
                results[path] = (r.status, r.getheader("Content-Type"), r.read())
                c.close()
            c = http.client.HTTPConnection("127.0.0.1", fwd, timeout=20)
            c.putrequest("GARBAGE", "/")
            c.endheaders()
            results["bad"] = c.getresponse().status
        except Exception as e:
            results["error"] = e
    t = threading.Thread(target=client, daemon=True)
    t.start()
    n = webstatus.serve(GUEST_PORT, count=6, sock_module=gsock, stack=stack)
    t.join(20)
    assert "error" not in results, results.get("error")
    assert n == 6
    status, ctype, body = results["/"]
    assert status == 200 and ctype.startswith("text/html")
    assert b"virtio-blk" in body and b"/svg/0/0" in body and b"10.0.2.15" in body
    st = json.loads(results["/api/status"][2])
    assert st["inet"]["tcp"]["passive_opens"] >= 2
    assert results["/svg/0/0"][0] == 200 and results["/svg/0/0"][2].startswith(b"<svg")
    assert results["/1k"][:2] == (200, "text/plain") and len(results["/1k"][2]) == 1024
    assert results["/missing"][0] == 404
    assert results["bad"] == 405


def test_refresh_can_be_set_or_turned_off(machine):
    assert b"},1000);" in webstatus.route("GET", "/")[2]
    assert b"},250);" in webstatus.route("GET", "/?refresh=250")[2]
    assert b"<script>" not in webstatus.route("GET", "/?refresh=0")[2]
