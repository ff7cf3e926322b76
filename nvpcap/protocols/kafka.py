"""Apache Kafka wire protocol.

Spec: kafka.apache.org/protocol ("Common Request and Response Structure", "Headers"): every message is an
int32 size; a request header is api_key int16, api_version int16, correlation_id int32, client_id
NULLABLE_STRING (int16 length, -1 = null; still a classic string in the flexible header v2); a response
header is the correlation_id of the request it answers. NeuVector (dpi_kafka.c) limits api_key to 16 and
api_version to 4 (Kafka 0.10 era) and finalises after two valid requests or matching correlation ids; we
take every api key of current Kafka, and accept: a response whose correlation id matches, two chained
requests with the same client id, or (last call) one complete request with a client id of 3+ characters.
A request with neither a client id nor a correlation id is not enough (a ZooKeeper ConnectRequest parses as
an empty Produce v0).
"""
from __future__ import annotations

import struct

from .base import either_way_midstream, guarded, ProtocolSpec, Verdict

NO, MAYBE, YES = Verdict.NO, Verdict.MAYBE, Verdict.YES

MAX_SIZE = 100 * 1024 * 1024  # socket.request.max.bytes is 100 MiB
MAX_API_KEY = 90  # Kafka 4.x defines keys 0..~90 (share groups, streams groups)
MAX_API_VERSION = 20


def _request(b: bytes) -> tuple[Verdict, int, bytes | None, int]:
    """One request header at the start of b: (verdict, correlation id, client id, message end)."""
    if len(b) < 14:
        ok = (len(b) < 1 or b[0] <= MAX_SIZE >> 24) and (len(b) < 6 or b[4] == 0) and (len(b) < 8 or b[6] == 0)
        return (MAYBE if ok else NO), 0, None, 0
    size, key, version, corr, clen = struct.unpack_from(">IhhiH", b)
    if clen == 0xFFFF:
        clen = -1
    if (not 10 <= size <= MAX_SIZE or not 0 <= key <= MAX_API_KEY or not 0 <= version <= MAX_API_VERSION
            or corr < 0 or clen > min(size - 10, 1024)):
        return NO, 0, None, 0
    cid = b[14 : 14 + max(clen, 0)]
    if not all(0x20 <= x < 0x7F for x in cid):
        return NO, 0, None, 0
    if len(cid) < clen:
        return MAYBE, corr, None, 0
    return YES, corr, (cid if clen >= 0 else None), 4 + size


def _response(b: bytes, corr: int) -> Verdict:
    if len(b) < 8:
        return MAYBE if len(b) < 1 or b[0] <= MAX_SIZE >> 24 else NO
    size, rcorr = struct.unpack_from(">Ii", b)
    return YES if 4 <= size <= MAX_SIZE and rcorr == corr else NO


def _check(c: bytes, s: bytes, final: bool) -> Verdict:
    vc, corr, cid, end = _request(c) if c else (MAYBE, 0, None, 0)
    if vc != YES:
        return NO if vc == NO or (s and not c) else MAYBE
    if s:
        vs = _response(s, corr)
        if vs == NO:
            return NO
        if vs == YES and (cid or corr != 0):
            return YES
    # two chained requests from the same client id with increasing correlation ids (NeuVector: two requests)
    if len(c) > end:
        v2, corr2, cid2, _ = _request(c[end:])
        if v2 == NO:
            return NO
        if v2 == YES and corr < corr2 <= corr + 1000 and cid2 == cid and cid:
            return YES
    if final and len(cid or b"") >= 3 and cid[:1].isalpha() and len(c) >= end:
        return YES
    return MAYBE


_probe = either_way_midstream(_check)


probe = guarded(_probe)


SPEC = ProtocolSpec(
    name="kafka",
    transports=("tcp",),
    ports=(9092,),
    probe=probe,
    description="Kafka: request header (size, api_key, api_version, correlation id, client id) + matching response",
)
