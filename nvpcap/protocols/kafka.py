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
from typing import Callable

from .base import (CLIENT, FlowContext, Parser, ParserOutput, either_way_midstream,
                   guarded, ProtocolSpec, Verdict)
from .framing import Cursor, Framer, Short

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



# ---- parsing: requests paired with responses by correlation id (kafka.apache.org/protocol) ----

MAX_TOPICS = 100  # topic names kept per event
MAX_PENDING = 1024  # requests waiting for their response
KEEP_REQUEST = 64 * 1024  # leading bytes of a request read for its header and topic names
KEEP_RESPONSE = 8  # size + correlation id
MAX_NAME = 256  # characters kept of a client id or a topic name

# "Api Keys" table of the protocol guide (clients/.../protocol/ApiKeys.java; key 74 was ListClientMetricsResources)
API_NAMES = dict(enumerate((
    "Produce", "Fetch", "ListOffsets", "Metadata", "LeaderAndIsr", "StopReplica", "UpdateMetadata",
    "ControlledShutdown", "OffsetCommit", "OffsetFetch", "FindCoordinator", "JoinGroup", "Heartbeat", "LeaveGroup",
    "SyncGroup", "DescribeGroups", "ListGroups", "SaslHandshake", "ApiVersions", "CreateTopics", "DeleteTopics",
    "DeleteRecords", "InitProducerId", "OffsetForLeaderEpoch", "AddPartitionsToTxn", "AddOffsetsToTxn", "EndTxn",
    "WriteTxnMarkers", "TxnOffsetCommit", "DescribeAcls", "CreateAcls", "DeleteAcls", "DescribeConfigs",
    "AlterConfigs", "AlterReplicaLogDirs", "DescribeLogDirs", "SaslAuthenticate", "CreatePartitions",
    "CreateDelegationToken", "RenewDelegationToken", "ExpireDelegationToken", "DescribeDelegationToken",
    "DeleteGroups", "ElectLeaders", "IncrementalAlterConfigs", "AlterPartitionReassignments",
    "ListPartitionReassignments", "OffsetDelete", "DescribeClientQuotas", "AlterClientQuotas",
    "DescribeUserScramCredentials", "AlterUserScramCredentials", "Vote", "BeginQuorumEpoch", "EndQuorumEpoch",
    "DescribeQuorum", "AlterPartition", "UpdateFeatures", "Envelope", "FetchSnapshot", "DescribeCluster",
    "DescribeProducers", "BrokerRegistration", "BrokerHeartbeat", "UnregisterBroker", "DescribeTransactions",
    "ListTransactions", "AllocateProducerIds", "ConsumerGroupHeartbeat", "ConsumerGroupDescribe",
    "ControllerRegistration", "GetTelemetrySubscriptions", "PushTelemetry", "AssignReplicasToDirs",
    "ListConfigResources", "DescribeTopicPartitions", "ShareGroupHeartbeat", "ShareGroupDescribe", "ShareFetch",
    "ShareAcknowledge", "AddRaftVoter", "RemoveRaftVoter", "UpdateRaftVoter", "InitializeShareGroupState",
    "ReadShareGroupState", "WriteShareGroupState", "DeleteShareGroupState", "ReadShareGroupStateSummary",
    "StreamsGroupHeartbeat", "StreamsGroupDescribe", "DescribeShareGroupOffsets", "AlterShareGroupOffsets",
    "DeleteShareGroupOffsets")))
PRODUCE, FETCH, LIST_OFFSETS, METADATA, SASL_HANDSHAKE, API_VERSIONS = 0, 1, 2, 3, 17, 18
# first flexible version (compact strings/arrays, tagged fields; request header v2) of the APIs whose body is read:
# "flexibleVersions" of ProduceRequest.json, FetchRequest.json, ListOffsetsRequest.json, MetadataRequest.json,
# ApiVersionsRequest.json
FLEXIBLE_FROM = {PRODUCE: 9, FETCH: 12, LIST_OFFSETS: 6, METADATA: 9, API_VERSIONS: 3}
REQUEST_HEAD = struct.Struct(">hhi")  # api_key, api_version, correlation_id (after the int32 size)


class KafkaCursor(Cursor):
    """Reads the protocol's primitive types (protocol guide, "Protocol Primitive Types") from one message."""

    __slots__ = ()

    def string(self) -> str | None:
        """STRING / NULLABLE_STRING: int16 length (-1 = null)."""
        n = self.int(">h")
        return None if n < 0 else self.take(n).decode("utf-8", "replace")

    def compact_string(self) -> str | None:
        """COMPACT_(NULLABLE_)STRING: unsigned varint length + 1 (0 = null)."""
        n = self.uvarint()
        return None if n == 0 else self.take(n - 1).decode("utf-8", "replace")

    def array_len(self, compact: bool) -> int:
        """ARRAY: int32 count (-1 = null); COMPACT_ARRAY: unsigned varint count + 1 (0 = null). Null -> -1."""
        return self.uvarint() - 1 if compact else self.int(">i")

    def tagged_fields(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()
            self.skip(self.uvarint())


def _topic_list(c: KafkaCursor, compact: bool, skip_rest: Callable[[KafkaCursor], None], topics: list[str]) -> None:
    """An array of {name, ...}: append the names, skipping each entry's other fields."""
    count = c.array_len(compact)
    for _ in range(max(count, 0)):
        name = c.compact_string() if compact else c.string()
        if name is not None and len(topics) < MAX_TOPICS:
            topics.append(name[:MAX_NAME])
        skip_rest(c)
        if compact:
            c.tagged_fields()
        if len(topics) >= MAX_TOPICS:
            return


def _partitions(size: int, compact: bool) -> Callable[[KafkaCursor], None]:
    """Skips an array of fixed-size partition entries (each followed by tagged fields when compact)."""
    def skip(c: KafkaCursor) -> None:
        count = c.array_len(compact)
        if not compact:
            c.skip(max(count, 0) * size)
            return
        for _ in range(max(count, 0)):
            c.skip(size)
            c.tagged_fields()
    return skip


def _produce_partitions(compact: bool) -> Callable[[KafkaCursor], None]:
    """PartitionData: index int32, records (RECORDS: int32 length; COMPACT_RECORDS: varint length + 1)."""
    def skip(c: KafkaCursor) -> None:
        for _ in range(max(c.array_len(compact), 0)):
            c.skip(4)
            n = c.uvarint() - 1 if compact else c.int(">i")
            c.skip(max(n, 0))
            if compact:
                c.tagged_fields()
    return skip


def request_body(key: int, version: int, c: KafkaCursor, fields: dict) -> None:
    """The parts of the request body worth logging: topic names (Produce v0-12, Fetch v0-12, ListOffsets,
    Metadata; later versions name topics by id only), Produce acks, ApiVersions client software."""
    compact = version >= FLEXIBLE_FROM.get(key, 99)
    topics: list[str] = []
    try:
        if key == PRODUCE and version <= 12:
            if version >= 3:
                c.compact_string() if compact else c.string()  # transactional_id
            fields["acks"] = c.int(">h")
            c.skip(4)  # timeout
            _topic_list(c, compact, _produce_partitions(compact), topics)
        elif key == FETCH and version <= 12:
            c.skip(12)  # replica_id, max_wait, min_bytes
            c.skip((4 if version >= 3 else 0) + (1 if version >= 4 else 0) + (8 if version >= 7 else 0))
            size = 16 if version <= 4 else 24 if version <= 8 else 28 if version <= 11 else 32
            _topic_list(c, compact, _partitions(size, compact), topics)
        elif key == LIST_OFFSETS:
            c.skip(4 + (1 if version >= 2 else 0))  # replica_id, isolation_level
            size = 16 if version == 0 or version >= 4 else 12
            _topic_list(c, compact, _partitions(size, compact), topics)
        elif key == METADATA:
            count = c.array_len(compact)
            for _ in range(min(max(count, 0), MAX_TOPICS)):
                if version >= 10:
                    c.skip(16)  # topic_id
                name = c.compact_string() if compact else c.string()
                if name is not None:
                    topics.append(name[:MAX_NAME])
                if compact:
                    c.tagged_fields()
        elif key == API_VERSIONS and compact:
            fields["client_software_name"] = c.compact_string()
            fields["client_software_version"] = c.compact_string()
    except (Short, struct.error):
        pass  # keep what was read: the prefix may end inside a large message
    if topics:
        fields["topics"] = topics


def _length(head: bytes) -> int | None:
    size = struct.unpack_from(">i", head)[0]
    return 4 + size if 0 <= size <= MAX_SIZE else None


class KafkaParser(Parser):
    """One event per request, paired with its response by correlation id: api name and version, client id,
    topics, request and response sizes. Produce with acks=0 gets no response (emitted at once). Raw SASL tokens
    after a SaslHandshake v0 (not Kafka-framed headers) are skipped."""

    def __init__(self, out: ParserOutput, ctx: FlowContext) -> None:
        super().__init__(out, ctx)
        self.framers = (Framer(4, _length, keep=KEEP_REQUEST), Framer(4, _length, keep=KEEP_RESPONSE))
        self.pending: dict[int, tuple[dict, int, int]] = {}  # correlation id -> (fields, frame, ts)
        self.raw_sasl = False  # a SaslHandshake v0 was seen: unframed SASL tokens may follow

    def feed(self, side: int, data: bytes, frame: int, ts_ns: int) -> None:
        handle = self._request if side == CLIENT else self._response
        if not self.framers[side].feed(data, frame, ts_ns, handle):
            self.out.anomaly("kafka-bad-length", "message size out of range: framing lost", frame, ts_ns)
            self.done = True

    def _request(self, msg: bytes, total: int, frame: int, ts_ns: int) -> int:
        c = KafkaCursor(msg, 4)
        try:
            key, version, corr = REQUEST_HEAD.unpack(c.take(8))
            client_id = c.string()
        except (Short, struct.error, UnicodeError):
            key, version, corr, client_id = -1, -1, -1, None
        if key not in API_NAMES or not 0 <= version <= MAX_API_VERSION or corr < 0:
            if not self.raw_sasl:
                self.anomaly_once("kafka-bad-header", f"request header api_key={key} version={version}", frame, ts_ns)
            return 0
        fields: dict = {"api": API_NAMES[key], "api_key": key, "api_version": version, "correlation_id": corr,
                        "client_id": client_id[:MAX_NAME] if client_id is not None else None,
                        "request_size": total - 4}
        try:
            if version >= FLEXIBLE_FROM.get(key, 99):
                c.tagged_fields()  # request header v2
            request_body(key, version, c, fields)
        except (Short, struct.error):
            pass
        if key == SASL_HANDSHAKE and version == 0:
            self.raw_sasl = True
        if key == PRODUCE and fields.get("acks") == 0:
            self.out.event(fields, frame, ts_ns)  # acks=0: the broker sends no response
            return 0
        if len(self.pending) >= MAX_PENDING:
            old = next(iter(self.pending))
            self.out.event(*self.pending.pop(old))
        self.pending.pop(corr, None)
        self.pending[corr] = (fields, frame, ts_ns)
        return 0

    def _response(self, msg: bytes, total: int, frame: int, ts_ns: int) -> int:
        if len(msg) < 8:
            return 0
        entry = self.pending.pop(struct.unpack_from(">i", msg, 4)[0], None)
        if entry is not None:
            entry[0]["response_size"] = total - 4
            self.out.event(*entry)
        return 0

    def finish(self) -> None:
        for fields, frame, ts_ns in self.pending.values():
            self.out.event(fields, frame, ts_ns)
        self.pending.clear()


SPEC = ProtocolSpec(
    name="kafka",
    transports=("tcp",),
    ports=(9092,),
    probe=probe,
    description="Kafka: request header (size, api_key, api_version, correlation id, client id) + matching response",
    parser=KafkaParser,
    extracts="per request/response: api name/key/version, correlation id, client id, topics, acks, sizes",
)
