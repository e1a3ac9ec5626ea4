#!/usr/bin/env python3
"""Writes the seeds of fuzz_xds (tests/fuzz/corpus/fuzz_xds/) in its operation format.

Bodies are protobuf text turned into wire bytes by `protoc --encode`, so the seeds follow
proto/ as it is. Run from the repository root: python3 tests/fuzz/xds_seeds.py
"""
import os
import struct
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fuzz", "corpus", "fuzz_xds")

ADD_ADDRESS, ADD_POLICY, REMOVE_ADDRESS, REMOVE_POLICY = 0, 1, 2, 3
NAMED, NEW_UPDATE, OTHER_TYPE, UNSUPPORTED = 4, 8, 16, 32


def encode(message, text):
    proto = {"istio.workload.Address": "istio/workload/workload.proto",
             "istio.security.Authorization": "istio/security/authorization.proto"}[message]
    return subprocess.run(["protoc", "-I", os.path.join(ROOT, "proto"), "-I", "/usr/include",
                           "--encode=" + message, proto],
                          input=text.encode(), capture_output=True, check=True).stdout


def address(text):
    return encode("istio.workload.Address", text)


def policy(text):
    return encode("istio.security.Authorization", text)


def op(flags, body=b""):
    return bytes([flags]) + struct.pack("<H", len(body)) + body


def ip(*octets):
    return "".join("\\%03o" % o for o in octets)


def workload(name, addr, extra=""):
    return address('workload { uid: "c1//v1/Pod/default/%s" name: "%s" namespace: "default" '
                   'addresses: "%s" network: "n1" tunnel_protocol: HBONE '
                   'service_account: "sa-%s" %s }' % (name, name, addr, name, extra))


def service(name, vip, extra=""):
    return address('service { name: "%s" namespace: "default" hostname: "%s.default.svc" '
                   'addresses { network: "n1" address: "%s" } '
                   'ports { service_port: 80 target_port: 8080 } %s }' % (name, name, vip, extra))


SERVES = 'services { key: "default/svc.default.svc" value { ports { service_port: 80 ' \
         'target_port: 8080 } } }'

ALLOW = policy('name: "allow" namespace: "default" scope: NAMESPACE action: ALLOW rules { '
               'clauses { matches { principals { prefix: "cluster.local/ns/default/" } '
               'source_ips { address: "%s" length: 8 } destination_ports: 8080 } } }'
               % ip(10, 0, 0, 0))
DENY = policy('name: "deny" namespace: "default" scope: GLOBAL action: DENY rules { clauses { '
              'matches { not_namespaces { exact: "default" } } } } dry_run: true')

SEEDS = {
    "workloads_and_service": [
        op(ADD_ADDRESS | NAMED, workload("a", ip(10, 0, 0, 1), SERVES)),
        op(ADD_ADDRESS | NAMED, workload("b", ip(10, 0, 0, 2), SERVES)),
        op(ADD_ADDRESS | NAMED, service("svc", ip(10, 96, 0, 1))),
    ],
    "policies": [
        op(ADD_ADDRESS | NAMED, workload("a", ip(10, 0, 0, 1), SERVES)),
        op(ADD_POLICY | NAMED, ALLOW),
        op(ADD_POLICY | NAMED, DENY),
        op(REMOVE_POLICY | NAMED | NEW_UPDATE, b"\x01"),
    ],
    "ip_conflict_and_removal": [
        op(ADD_ADDRESS | NAMED, workload("a", ip(10, 0, 0, 1))),
        op(ADD_ADDRESS | NAMED | NEW_UPDATE, workload("b", ip(10, 0, 0, 1))),
        op(REMOVE_ADDRESS | NAMED | NEW_UPDATE, b"\x00"),
        op(ADD_ADDRESS | NAMED, workload("b", ip(10, 0, 0, 1))),
    ],
    "ipv6_host_network_waypoint": [
        op(ADD_ADDRESS | NAMED, workload(
            "h", ip(10, 0, 0, 9), 'network_mode: HOST_NETWORK waypoint { address { network: '
            '"n1" address: "%s" } hbone_mtls_port: 15008 }' % ip(10, 0, 0, 50))),
        op(ADD_ADDRESS | NAMED, workload(
            "six", ip(0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1), SERVES)),
        op(ADD_ADDRESS | NAMED, service(
            "svc", ip(0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x60, 1),
            'waypoint { hostname { namespace: "default" hostname: "wp.default.svc" } '
            'hbone_mtls_port: 15008 } load_balancing { mode: FAILOVER routing_preference: '
            'NODE }')),
    ],
    "refusals": [
        op(ADD_ADDRESS, b"\x03bad"),
        op(ADD_ADDRESS | NAMED | OTHER_TYPE, workload("a", ip(10, 0, 0, 1))),
        op(ADD_ADDRESS | NAMED, workload("a", ip(10, 0, 0, 1, 5))),
        op(ADD_POLICY | NAMED | UNSUPPORTED | NEW_UPDATE, ALLOW),
    ],
}


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, ops in SEEDS.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(b"".join(ops))
    return 0


if __name__ == "__main__":
    sys.exit(main())
