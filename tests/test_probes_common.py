"""Probes of the common application protocols (nvpcap/protocols: http, rtsp, sip, ssl, ssh, dns, dhcp, ntp, tftp,
echo, syslog, radius, http2, grpc, memcached).

Positive samples are the first payload bytes of each direction of labelled flows of the public captures in
../shared/pcaps (LABELS.csv), copied here as hex so that the tests run in a fresh clone; the comment above each
names the capture and frame (extracted with tshark, TCP streams in sequence order). Protocols without a capture
use messages built from their specification (section cited). Every sample is also a negative case for the other
protocols; truncated and random inputs must never make a probe raise.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nvpcap.protocols.base import FlowContext, ProtocolSpec, Verdict

NAMES = (
    "http", "rtsp", "sip", "ssl", "ssh", "dns", "dhcp", "ntp", "tftp", "echo", "syslog", "radius", "http2", "grpc",
    "memcached",
)
SPECS: dict[str, ProtocolSpec] = {n: importlib.import_module(f"nvpcap.protocols.{n}").SPEC for n in NAMES}
YES, MAYBE, NO = Verdict.YES, Verdict.MAYBE, Verdict.NO


def H(text: str) -> bytes:
    return bytes.fromhex(text)


@dataclass(frozen=True)
class Sample:
    app: str
    transport: str
    client_port: int
    server_port: int
    client: bytes
    server: bytes
    final_only: bool = False  # no answer in the sample: YES only on the last call

    def ctx(self, final: bool = False, midstream: bool = False) -> FlowContext:
        return FlowContext(self.transport, self.client_port, self.server_port, midstream, final)


def last(ctx: FlowContext) -> FlowContext:
    """The same context on the last call."""
    return FlowContext(ctx.transport, ctx.client_port, ctx.server_port, ctx.midstream, True)


def verdict(name: str, sample: Sample, final: bool = False, midstream: bool = False) -> Verdict:
    return SPECS[name].probe(sample.client, sample.server, sample.ctx(final, midstream))


# ---------------------------------------------------------------------------------------------------------------
# Samples from the labelled captures
# ---------------------------------------------------------------------------------------------------------------

# http__ndpi__http.pcapng: client stream from frame 4; server stream from frame 6, first 160 bytes
HTTP_GET = Sample(
    "http", "tcp", 42170, 80,
    H(
        "474554202f20485454502f312e310d0a486f73743a20676f6f676c652e636f6d0d0a557365722d4167656e743a206375"
        "726c2f372e36382e300d0a4163636570743a202a2f2a0d0a0d0a"
    ),
    H(
        "485454502f312e3120333031204d6f766564205065726d616e656e746c790d0a4c6f636174696f6e3a20687474703a2f"
        "2f7777772e676f6f676c652e636f6d2f0d0a436f6e74656e742d547970653a20746578742f68746d6c3b206368617273"
        "65743d5554462d380d0a446174653a205475652c203235204a616e20323032322031363a35303a343120474d540d0a45"
        "7870697265733a205468752c20323420"
    ),
)
# http__ndpi__WebattackSQLinj.pcap: client stream from frame 4, first 200 bytes;
# server stream from frame 6, first 100 bytes
HTTP_SQLI = Sample(
    "http", "tcp", 36196, 80,
    H(
        "474554202f64762f76756c6e65726162696c69746965732f73716c692f3f69643d31253237265375626d69743d537562"
        "6d697420485454502f312e310d0a486f73743a203230352e3137342e3136352e36380d0a557365722d4167656e743a20"
        "4d6f7a696c6c612f352e3020285831313b204c696e7578207838365f36343b2072763a34352e3029204765636b6f2f32"
        "303130303130312046697265666f782f34352e300d0a4163636570743a20746578742f68746d6c2c6170706c69636174"
        "696f6e2f7868746d"
    ),
    H(
        "485454502f312e3120323030204f4b0d0a446174653a205468752c203036204a756c20323031372031333a34303a3037"
        "20474d540d0a5365727665723a204170616368652f322e342e313820285562756e7475290d0a457870697265733a2054"
        "68752c20"
    ),
)
# rtsp__ndpi__rtsp.pcap: client stream from frame 25, first 130 bytes; server stream from frame 33, first 120 bytes
RTSP_OPTIONS = Sample(
    "rtsp", "tcp", 52472, 8554,
    H(
        "4f5054494f4e5320727473703a2f2f31302e322e322e323a383535342f20525453502f312e300d0a435365713a20320d"
        "0a557365722d4167656e743a204c6962564c432f332e302e313620284c4956453535352053747265616d696e67204d65"
        "6469612076323031362e31312e3238290d0a0d0a444553435249424520727473703a"
    ),
    H(
        "525453502f312e3020323030204f4b0d0a5365727665723a20564c432f332e302e31320d0a436f6e74656e742d4c656e"
        "6774683a20300d0a437365713a20320d0a5075626c69633a2044455343524942452c53455455502c54454152444f574e"
        "2c504c41592c50415553452c4745545f504152414d455445"
    ),
)
# rtsp__ndpi__rtsp.pcap: client stream from frame 1, first 140 bytes
RTSP_GET_PARAMETER = Sample(
    "rtsp", "tcp", 52470, 8554,
    H(
        "4745545f504152414d4554455220727473703a2f2f31302e322e322e323a383535342f20525453502f312e300d0a4353"
        "65713a20370d0a557365722d4167656e743a204c6962564c432f332e302e313620284c4956453535352053747265616d"
        "696e67204d656469612076323031362e31312e3238290d0a53657373696f6e3a203636306663346330633661"
    ),
    b"",
    final_only=True,  # no answer in the capture
)
# sip__ndpi__sip.pcap: client frame 1, first 160 bytes; server frame 2, first 140 bytes
SIP_REGISTER = Sample(
    "sip", "udp", 5060, 5060,
    H(
        "5245474953544552207369703a7369702e6379626572636974792e646b205349502f322e300d0a5669613a205349502f"
        "322e302f554450203139322e3136382e312e323b6272616e63683d7a39684734624b6e703135313234383733372d3436"
        "6561373135653139322e3136382e312e323b72706f72740d0a46726f6d3a203c7369703a766f69313830363340736970"
        "2e6379626572636974792e646b3e3b74"
    ),
    H(
        "5349502f322e302034303120556e617574686f72697a65640d0a43616c6c2d49443a203537383232323732392d343636"
        "3564373735403537383232323733322d34363635643737320d0a435365713a2036382052454749535445520d0a46726f"
        "6d3a203c7369703a766f693138303633407369702e6379626572636974792e646b3e3b7461673d3930336466"
    ),
)
# ssl__ndpi__443-safari.pcap: client stream from frame 4, first 120 bytes; server stream from frame 6, first 100 bytes
SSL_SAFARI = Sample(
    "ssl", "tcp", 53031, 443,
    H(
        "16030100e4010000e00303b753d483c3a76617db4892f2b8b36ccbbc8cdeb8b7bae52cd1940597423292be000028c02c"
        "c02bc024c023c00ac009cca9c030c02fc028c027c014c013cca8009d009c003d003c0035002f0100008fff0100010000"
        "000011000f00000c7777772e6e746f702e6f726700170000"
    ),
    H(
        "160303006a0200006603038aa6c89ca6e7772e6938d81aefc7e10e6f353bb1ef4c122d1444c8cd4f3156092082a54189"
        "93b6431f479ce7c5cb61eef4bf60b53fdd7c3dac11c280a6fe55ee60cca800001eff0100010000000000000b00040300"
        "01020010"
    ),
)
# ssl__ndpi__tls_long_cert.pcap: client stream from frame 4, first 120 bytes;
# server stream from frame 6, first 100 bytes
SSL_LONG_CERT = Sample(
    "ssl", "tcp", 60174, 443,
    H(
        "1603010200010001fc0303485ecec43608d94e235313d7fb3ba2d988423ab88735a4dc86146a9c75ffcb43205d5b96b5"
        "063de79099f51fc98d019969ba3b30131e78209f2b693087625b37160022fafa130113021303c02bc02fc02cc030cca9"
        "cca8c013c014009c009d002f0035000a010001918a8a0000"
    ),
    H(
        "160303004e0200004a03035532da6cd17b689248c2d603c4e3f29427a968e0be897cb517fc442cfd1663dc00c0300000"
        "22ff0100010000000000000b00040300010200230000000500000010000500030268321603030f7e0b000f7a000f7700"
        "0ae23082"
    ),
)
# ssh__ndpi__ssh.pcap: client stream from frame 6, first 60 bytes; server stream from frame 4, first 60 bytes
SSH_OPENSSH = Sample(
    "ssh", "tcp", 58395, 22,
    H(
        "5353482d322e302d4f70656e5353485f352e360d0a00000384041418ba31471acef22d8889d6d144500df40000007e64"
        "69666669652d68656c6c6d61"
    ),
    H(
        "5353482d322e302d4f70656e5353485f352e330d0a0000030c0a1400f2294e8c29fd1dc45641ba5dafaad70000007e64"
        "69666669652d68656c6c6d61"
    ),
)
# ssh__ndpi__ssh.pcap: client stream from frame 262, first 60 bytes; server stream from frame 264, first 60 bytes
SSH_APACHE = Sample(
    "ssh", "tcp", 58496, 8000,
    H(
        "5353482d322e302d4f70656e5353485f382e327031205562756e74752d347562756e7475302e31310d0a000005fc0514"
        "d18d9028e61b3c5bc66243ef"
    ),
    H(
        "5353482d322e302d4150414348452d535348442d322e352e300d0a000004040f1446f89598b20fce9c6a7d666f5d8f56"
        "870000014d656364682d7368"
    ),
)
# dns__ndpi__dns-google-nsid.pcapng: client frame 3; server frame 4
DNS_UDP = Sample(
    "dns", "udp", 58580, 53,
    H("4d150120000100000000000103777777046e746f70036f72670000010001000029100000000000000400030000"),
    H(
        "4d158180000100020000000103777777046e746f70036f72670000010001c00c0005000100000dad0014116e746f702d"
        "6469676974616c6f6365616ec010c02a0001000100000e100004b23ec582000029020000000000000d00030009677064"
        "6e732d6d696c"
    ),
)
# dns__ndpi__dns_fragmented.pcap: client stream from frame 48; server stream from frame 50, first 120 bytes
DNS_TCP = Sample(
    "dns", "tcp", 57089, 53,
    H(
        "003480e4012000010000000000010877656265726c61620264650000300001000029100000008000000c000a00081b9a"
        "f622ab2c9740"
    ),
    H(
        "06c280e4850000010004000000010877656265726c61620264650000300001c00c003000010000003c01080100030a03"
        "010001d054dc28f150ac3b49e6336bb731caafd7837ce7550b0ccee17f51e2da8a03ae6ed24787184bfa6d76f48c5091"
        "32a8f094485dc2970fe6958b3b629a5f3ef013c25c534f7e"
    ),
)
# dhcp__zeek__dhcp_dhcp.pcap: client frame 1
DHCP_DISCOVER = Sample(
    "dhcp", "udp", 68, 67,
    H(
        "01010600000007c0000000000000000000000000000000000000000090b11c9949290000000000000000000000000000"
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000063825363"
        "3501013204c0a8d3c20c0d62746573742e69732e636f6f6cff"
    ),
    b"",
)
# dhcp__ndpi__dhcp-fuzz.pcap: client frame 1
DHCP_FUZZ = Sample(
    "dhcp", "udp", 68, 67,
    H(
        "01010600c979b96000000000c0a80168000000000000000000000000001f29da2d790000000000000000000000000000"
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
        "000000000000000000d70000000000005300000000000000000000000000000000000000000000000000000000000000"
        "000000000000000000000000000000000000000000000000000000000000000000650000000000000000000063825363"
        "35016a3d0701001f29da2d790c074d4b30333836323c314d53465420352e30370c010f03062c2e2f1f21f92bfc2b03dc"
        "0100ff000000002500000000"
    ),
    b"",
)
# ntp__ndpi__NTPv4.pcap: client frame 1
NTP_V4 = Sample(
    "ntp", "udp", 123, 123,
    H("230207eb00000450000003ab83bc03dfd94f51c33165b860d944575530336fd0d944575531b4e978d94f51f42d26e2f4"),
    b"",
    final_only=True,  # no answer in the capture
)
# ntp__ndpi__NTPv3.pcap: client frame 1
NTP_V3 = Sample(
    "ntp", "udp", 123, 80,
    H("1c0004fa00000000000000000000000000000000000000000000000000000000d94f4f1100000000d94f4f1100000000"),
    b"",
)
# tftp__ndpi__tftp.pcap: client frame 3
TFTP_RRQ = Sample(
    "tftp", "udp", 50618, 69,
    H("0001726663313335302e747874006f6374657400"),
    b"",
)
# tftp__ndpi__tftp.pcap: client frame 4, first 40 bytes; server frame 5
TFTP_DATA_ACK = Sample(
    "tftp", "udp", 3445, 50618,
    H("000300010a0a0a0a0a0a4e6574776f726b20576f726b696e672047726f7570202020202020202020"),
    H("00040001"),
)
# tftp__ndpi__tftp.pcap: client frame 104; server frame 105, first 40 bytes
TFTP_ACK_DATA = Sample(
    "tftp", "udp", 62058, 44618,
    H("00040000"),
    H("000300011f8b08009ca8f7600003ecdcbd6e9ed982a6e7dc47f1a1039a0cb84552ff02c609151803"),
)
# tftp__ndpi__tftp.pcap: client frame 108
TFTP_WRQ_OPTIONS = Sample(
    "tftp", "udp", 35840, 69,
    H("0002656d7074793130304b42006f6374657400626c6b73697a650031343638007473697a650031303030303000"),
    b"",
)
# tftp__ndpi__tftp.pcap: client frame 109
TFTP_OACK = Sample(
    "tftp", "udp", 47649, 35840,
    H("0006626c6b73697a650031343638007473697a650031303030303000"),
    b"",
    final_only=True,  # no answer in the capture
)
# tftp__ndpi__tftp.pcap: client frame 1
TFTP_RRQ_PADDED = Sample(
    "tftp", "udp", 54626, 69,
    H("000100000000000000000000006f6374657400"),
    b"",
)
# syslog__ndpi__syslog.pcap: client frame 18
SYSLOG_BSD = Sample(
    "syslog", "udp", 59194, 514,
    H(
        "3c3134373e4a616e2020322031303a30393a3532206e6236206368696c6c6973706f745b343232325d3a20433a313932"
        "2e3136382e322e38332f30303a31393a37443a33423a36463a44340a"
    ),
    b"",
)
# syslog__ndpi__syslog.pcap: client stream from frame 81, first 120 bytes
SYSLOG_5424_TCP = Sample(
    "syslog", "tcp", 49948, 52173,
    H(
        "3c32323e3120323032312d30342d31385431343a35313a34382b30343a3030206950686f6e65372c3220636f6d2e6474"
        "732e66726565666972657468202d202d202d205b312e36302e312d342e302e355d203c36304246373134332d3134343e"
        "203c2b5b42656554616c6b2068616e646c65446964426563"
    ),
    b"",
)
# syslog__ndpi__syslog.pcap: client frame 20
SYSLOG_CISCO = Sample(
    "syslog", "udp", 50080, 514,
    H(
        "3c3138393e37323a204d61722020332031393a35373a31372e3337313a20254c494e4b2d352d4348414e4745443a2049"
        "6e74657266616365204769676162697445746865726e6574302f322c206368616e67656420737461746520746f206164"
        "6d696e6973747261746976656c7920646f776e"
    ),
    b"",
)
# radius__zeek__radius_radius.pcap: client frame 1; server frame 2
RADIUS = Sample(
    "radius", "udp", 1645, 1812,
    H(
        "0105008becfe3d2fe4473ec6299095ee46aedf7704060a00000105060000c35c3d060000000f010e4a6f686e2e4d6347"
        "7569726b1e1330302d31392d30362d45412d42382d38431f1330302d31342d32322d45392d35342d3545060600000002"
        "0c06000005dc4f1302000011014a6f686e2e4d63477569726b501228c5beb8842486da70db51316f9d7889"
    ),
    H(
        "0b05006df050649184625d36f14c9075b7a48b830806fffffffe0c0600000240060600000002120b48656c6c6f2c2025"
        "754f18010100160410266b0e9a58322f4d01ab25b35f879464501211b5043c8a288758173133a5e07434cf1812c6d195"
        "032fdc30240f7313b231ef1d77"
    ),
)
# grpc__ndpi__http2.pcap: client stream from frame 1; server stream from frame 4, first 60 bytes
HTTP2 = Sample(
    "http2", "tcp", 37824, 29518,
    H(
        "505249202a20485454502f322e300d0a0d0a534d0d0a0d0a000012040000000000000200000000000400400000000600"
        "a000000000040800000000004000000000005d010400000003418b089d5c0b8170dc13ed85ef83459362a1d32ac43d34"
        "b1dc2c22d8d04b0d5a4c7a91865f8b1d75d0620d263d4c7441ea538b1d75d0620d263d4c7441ea7a93d5596a875e45b1"
        "16a2d8349ec602b81703131f5c0331333550839bd9ab0000870001000000037b22616d66537461747573557269223a22"
        "687474703a2f2f3132372e302e302e313a32393530372f6e7063662d63616c6c6261636b2f76312f616d667374617475"
        "73222c226775616d694c697374223a5b7b22706c6d6e4964223a7b226d6363223a22323038222c226d6e63223a223933"
        "227d2c22616d664964223a22636166653030227d5d7d000000040100000000"
    ),
    H(
        "0000180400000000000005001000000003000000fa000600100140000400100000000000040100000000000004080000"
        "000000000f00010000040800"
    ),
)
# grpc__packt__Unary_filtered.pcap: client stream from frame 7, first 180 bytes;
# server stream from frame 5, first 60 bytes
GRPC = Sample(
    "grpc", "tcp", 65094, 50051,
    H(
        "505249202a20485454502f322e300d0a0d0a534d0d0a0d0a000000040000000000000000040100000000000052010400"
        "00000183864592626b0a54af8ac2953b8b677310ac62b0a54f418ba0e41d139d09b8d800d87f5f8b1d75d0620d263d4c"
        "4d65647a8a9acac8b4c7602bb605c340027465864d833505b11f57891dfb69a7d6f3f52d5f00000e0001000000010000"
        "0000090a07436c656d656e7400000806010000000002041010090e070700000408000000"
    ),
    H(
        "0000060400000000000005000040000000000401000000000000040800000000000000000e0000080600000000000204"
        "1010090e070700000e010400"
    ),
)
# memcached__ndpi__memcached.pcap: client stream from frame 4; server stream from frame 6, first 60 bytes
MEMCACHED = Sample(
    "memcached", "tcp", 59604, 11211,
    H("73746174730d0a"),
    H(
        "535441542070696420383833370d0a5354415420757074696d65203139330d0a535441542074696d6520313533343334"
        "333734340d0a535441542076"
    ),
)


# ---------------------------------------------------------------------------------------------------------------
# Samples built from the specifications (no labelled capture has them)
# ---------------------------------------------------------------------------------------------------------------

# RFC 862: the server returns what it receives, TCP or UDP port 7
ECHO_TCP = Sample("echo", "tcp", 40000, 7, b"hello, echo\r\nsecond line\r\n", b"hello, echo\r\n")
ECHO_UDP = Sample("echo", "udp", 40000, 7, bytes(range(1, 40)), bytes(range(1, 40)))

# RFC 3665 §3.1 F1/F2 (abridged): INVITE over TCP answered by 100 Trying
SIP_TCP = Sample(
    "sip", "tcp", 40000, 5060,
    b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74bf9\r\n"
    b"Max-Forwards: 70\r\nFrom: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>\r\nCall-ID: 3848276298220188511@atlanta.example.com\r\n"
    b"CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
    b"SIP/2.0 100 Trying\r\nVia: SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74bf9\r\n",
)

# RFC 6101 appendix E.1 / SSL 2.0 §2.6: version-2 CLIENT-HELLO (7 cipher specs, no session id, 16-byte challenge)
SSL_V2_HELLO = Sample(
    "ssl", "tcp", 40000, 443,
    H("802e0100020015000000100700c0050080030080010080060040040080020080") + bytes(range(16)),
    b"",
)

# RFC 8446 §5.2: application data records both ways (a TLS flow whose handshake was not captured)
SSL_APPDATA = Sample("ssl", "tcp", 40000, 8443, H("1703030020") + bytes(32), H("1703030030") + bytes(48))

# RFC 8415 §16.2 SOLICIT: client id (DUID-LL, §11.4), elapsed time (§21.9), option request (§21.7)
DHCPV6_SOLICIT = Sample(
    "dhcp", "udp", 546, 547,
    H("01102030" "0001000a00030001001122334455" "000800020000" "0006000400170018"),
    b"",
)

# After RFC 2865 §7.1: Access-Request (User-Name, User-Password, NAS-IP-Address, NAS-Port) and its Access-Accept,
# here on other ports (an answered request needs no port)
RADIUS_RFC = Sample(
    "radius", "udp", 40000, 40001,
    H("010000380f403f9473978057bd83d5cb98f4227a01066e656d6f02120dbe708d93d413ce3196e43f782a0aee0406c0a80110"
      "0506""00000003"),
    H("0200002686fe220e7624ba2a1005f6bf9b55e0b2060600000001""0f0600000000""0e06c0a80103"),
)

# RFC 5424 §6.5 example 1 without its BOM (UDP), and RFC 6587 §3.4.1 octet-counted framing of RFC 3164 §5.4's example (TCP)
SYSLOG_5424 = Sample(
    "syslog", "udp", 40000, 514,
    b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - 'su root' failed for lonvick on /dev/pts/8",
    b"",
)
SYSLOG_OCTET_COUNTED = Sample(
    "syslog", "tcp", 40000, 601,
    b"76 <34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8",
    b"",
)

# memcached doc/protocol.txt "Retrieval command", and doc/protocol-binary.txt "Example: Get" (key "Hello")
MEMCACHED_TEXT_GET = Sample("memcached", "tcp", 40000, 11211, b"get foo\r\n", b"VALUE foo 0 3\r\nbar\r\nEND\r\n")
MEMCACHED_BINARY_GET = Sample(
    "memcached", "tcp", 40000, 11211,
    H("800000050000000000000005000000000000000000000000") + b"Hello",
    H("810000000400000000000009000000000000000000000001") + H("deadbeef") + b"World",
)

# RFC 1350 §5: an ERROR answer (code 1, file not found) to a DATA packet on a transfer flow
TFTP_DATA_ERROR = Sample("tftp", "udp", 40000, 40001, H("00030001") + b"data" * 10, H("00050001") + b"File not found\0")


def h2_request(block: bytes) -> bytes:
    """Client preface, empty SETTINGS, then one HEADERS frame (END_HEADERS, stream 1) holding block."""
    settings = H("000000" "04" "00" "00000000")  # length 0, type SETTINGS, no flags, stream 0
    headers = len(block).to_bytes(3, "big") + H("01" "04" "00000001")  # type HEADERS, END_HEADERS, stream 1
    return b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + settings + headers + block


def hpack_literal(text: bytes) -> bytes:
    """An HPACK string literal without Huffman coding (RFC 7541 §5.2), shorter than 127 bytes."""
    return bytes((len(text),)) + text


# gRPC PROTOCOL-HTTP2.md request example, HPACK-coded without Huffman (RFC 7541 §6.2.1): :method POST (index 3),
# :scheme http (6), :path (literal value, name index 4), content-type (name index 31) application/grpc+proto
GRPC_LITERAL = Sample(
    "grpc", "tcp", 40000, 50051,
    h2_request(
        H("8386")
        + H("44") + hpack_literal(b"/helloworld.Greeter/SayHello")
        + H("5f") + hpack_literal(b"application/grpc+proto")
    ),
    b"",
)
# ... and with a literal grpc-timeout header name (RFC 7541 §6.2.2, literal name) instead of the content-type
GRPC_TIMEOUT = Sample(
    "grpc", "tcp", 40000, 50051,
    h2_request(H("8386") + H("00") + hpack_literal(b"grpc-timeout") + hpack_literal(b"1S")),
    b"",
)
# plain HTTP/2 GET (RFC 7541 C.3.1 request: :method GET, :scheme http, :path /, :authority www.example.com)
HTTP2_GET = Sample("http2", "tcp", 40000, 8080, h2_request(H("828684410f7777772e6578616d706c652e636f6d")), b"")

SAMPLES = {k: v for k, v in globals().items() if isinstance(v, Sample)}
IDS = list(SAMPLES)


# ---------------------------------------------------------------------------------------------------------------
# Declarations
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_spec_declaration(name):
    spec = SPECS[name]
    assert spec.name == name
    assert spec.transports and set(spec.transports) <= {"tcp", "udp"}
    assert all(isinstance(p, int) and 0 < p < 65536 for p in spec.ports)
    assert spec.description and callable(spec.probe)


def test_every_protocol_has_a_positive_sample():
    assert {s.app for s in SAMPLES.values()} == set(NAMES)


# ---------------------------------------------------------------------------------------------------------------
# Positives and cross-checks
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", IDS)
def test_positive(key):
    s = SAMPLES[key]
    assert s.transport in SPECS[s.app].transports
    assert verdict(s.app, s, final=True) == YES
    assert verdict(s.app, s, final=False) == (MAYBE if s.final_only else YES)


@pytest.mark.parametrize("key", IDS)
def test_other_protocols_never_claim(key):
    s = SAMPLES[key]
    for name, spec in SPECS.items():
        if name == s.app or s.transport not in spec.transports:
            continue
        for final in (False, True):
            for midstream in (False, True) if s.transport == "tcp" else (False,):
                assert verdict(name, s, final, midstream) != YES, (name, final, midstream)


@pytest.mark.parametrize("key", IDS)
def test_answer_alone_or_swapped_is_not_claimed_by_others(key):
    s = SAMPLES[key]
    swapped = replace(s, client=s.server, server=s.client, client_port=s.server_port, server_port=s.client_port)
    for name, spec in SPECS.items():
        if name != s.app and s.transport in spec.transports:
            assert verdict(name, swapped, final=True) != YES, name


# ---------------------------------------------------------------------------------------------------------------
# Hostile input: never raise
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", IDS)
def test_truncated_at_every_length(key):
    s = SAMPLES[key]
    for n in range(max(len(s.client), len(s.server)) + 1):
        cut = replace(s, client=s.client[:n], server=s.server[:n])
        half = replace(s, server=s.server[:n])
        for name, spec in SPECS.items():
            for variant in (cut, half):
                for final in (False, True):
                    v = spec.probe(variant.client, variant.server, variant.ctx(final, midstream=n % 2 == 1))
                    assert isinstance(v, Verdict), name
                    if name != variant.app and s.transport in spec.transports:
                        if s.app == "grpc" and name == "http2":
                            continue  # a gRPC flow cut before its first HEADERS is HTTP/2 as far as anyone can tell
                        assert v != YES, (name, n)


CTX = st.builds(
    FlowContext,
    transport=st.sampled_from(("tcp", "udp")),
    client_port=st.sampled_from((7, 53, 69, 123, 443, 514, 546, 1812, 5060, 11211, 40000)),
    server_port=st.sampled_from((7, 53, 67, 69, 80, 123, 547, 554, 1813, 5353, 50051, 40001)),
    midstream=st.booleans(),
    final=st.booleans(),
)


@settings(max_examples=100, deadline=None)
@given(client=st.binary(max_size=600), server=st.binary(max_size=600), ctx=CTX)
def test_random_bytes_never_raise(client, server, ctx):
    for spec in SPECS.values():
        assert isinstance(spec.probe(client, server, ctx), Verdict)


@settings(max_examples=100, deadline=None)
@given(key=st.sampled_from(IDS), data=st.data(), ctx=CTX)
def test_mutated_samples_never_raise(key, data, ctx):
    """Real prefixes with random bytes overwritten or appended: reaches the deeper parsing paths."""
    s = SAMPLES[key]
    out = []
    for buf in (s.client, s.server):
        at = data.draw(st.integers(0, len(buf)))
        junk = data.draw(st.binary(max_size=64))
        out.append(buf[:at] + junk + buf[at + len(junk):])
    for spec in SPECS.values():
        assert isinstance(spec.probe(out[0], out[1], ctx), Verdict)


def _helpers():
    """The parsing helpers behind the probes, called bare: the probes' catch-all must not be what keeps them
    from raising."""
    m = {n: importlib.import_module(f"nvpcap.protocols.{n}") for n in NAMES}
    return (
        lambda b: m["http"].request_line(b, b"HTTP/", b"1", b.find(b"\n") + 1),
        lambda b: m["http"].status_line(b, b"RTSP/", b"12"),
        lambda b: m["ssl"].side(b, 1),
        lambda b: m["ssl"].side(b, 2),
        m["ssh"].banner,
        lambda b: m["dns"].parse(b, whole=True),
        lambda b: m["dns"].parse(b, whole=False),
        m["dhcp"].bootp,
        m["dhcp"].dhcpv6,
        m["ntp"].header,
        m["tftp"].request,
        m["tftp"].oack,
        m["tftp"].error,
        lambda b: m["syslog"].message(b, whole=False) if b else None,
        m["radius"].packet,
        m["memcached"].command,
        lambda b: m["memcached"].binary(b, b[::-1]),
        m["http2"].first_request,
        m["http2"].header_fields,
    )


HELPERS = _helpers()


@settings(max_examples=100, deadline=None)
@given(key=st.sampled_from(IDS), data=st.data())
def test_parsing_helpers_never_raise(key, data):
    s = SAMPLES[key]
    buf = data.draw(st.sampled_from((s.client, s.server)))
    at = data.draw(st.integers(0, len(buf)))
    buf = buf[:at] + data.draw(st.binary(max_size=32)) + buf[at + 1:]
    for helper in HELPERS:
        helper(buf)


def test_big_buffers():
    """4096-byte buffers of text or of zeros: every probe answers (and quickly, no quadratic scan)."""
    for buf in (b"A" * 4096, b"\0" * 4096, b"GET " + b"/" * 4092, b"<13>" + b"x" * 4092, b"\n" * 4096):
        for final in (False, True):
            for transport in ("tcp", "udp"):
                ctx = FlowContext(transport, 40000, 40001, True, final)
                for spec in SPECS.values():
                    assert isinstance(spec.probe(buf, buf, ctx), Verdict)


@pytest.mark.parametrize("name", ["http", "rtsp", "sip", "ssl", "ssh", "syslog", "http2", "grpc", "memcached"])
def test_foreign_first_bytes_are_refused_early(name):
    ctx = FlowContext("tcp", 40000, 40001, False, False)
    assert SPECS[name].probe(b"\x00\xff\x10\x02", b"", ctx) == NO


# ---------------------------------------------------------------------------------------------------------------
# Precedence between protocols sharing a syntax
# ---------------------------------------------------------------------------------------------------------------


def test_http2_vs_grpc_on_the_captures():
    assert verdict("grpc", GRPC) == YES and verdict("http2", GRPC) == NO  # grpc__packt__Unary_filtered.pcap
    assert verdict("http2", HTTP2) == YES and verdict("grpc", HTTP2) == NO  # grpc__ndpi__http2.pcap (plain h2c)
    for final in (False, True):
        assert verdict("http2", GRPC, final) == NO and verdict("grpc", HTTP2, final) == NO


def test_http2_waits_for_the_first_headers():
    preface_and_settings = HTTP2.client[: HTTP2.client.index(b"\x01\x04\x00\x00\x00\x03") - 3]
    early = replace(HTTP2, client=preface_and_settings)
    assert verdict("http2", early) == MAYBE and verdict("grpc", early) == MAYBE
    assert verdict("http2", early, final=True) == YES and verdict("grpc", early, final=True) == NO
    assert verdict("http", early, final=True) == NO  # PRI * HTTP/2.0 is not an HTTP/1 request


def test_grpc_huffman_and_literal_encodings():
    assert verdict("grpc", GRPC_LITERAL) == YES and verdict("http2", GRPC_LITERAL) == NO
    assert verdict("grpc", GRPC_TIMEOUT) == YES and verdict("http2", GRPC_TIMEOUT) == NO
    assert verdict("http2", HTTP2_GET) == YES and verdict("grpc", HTTP2_GET) == NO


def test_http_vs_rtsp_vs_sip():
    for sample, app in ((HTTP_GET, "http"), (RTSP_OPTIONS, "rtsp"), (SIP_TCP, "sip")):
        for name in ("http", "rtsp", "sip"):
            expected = YES if name == app else NO
            assert verdict(name, sample) == expected, (app, name)
    assert verdict("http", replace(SIP_REGISTER, transport="tcp")) == NO


def test_memcached_leaves_sasl_to_couchbase():
    sasl = H("80200000000000000000000000000001") + bytes(8)  # SASL_LIST_MECHS request (opaque 1)
    answer = H("81200000000000000000000500000001") + bytes(8) + b"PLAIN"
    s = Sample("memcached", "tcp", 40000, 11210, sasl, answer)
    assert verdict("memcached", s) == MAYBE and verdict("memcached", s, final=True) == NO


# ---------------------------------------------------------------------------------------------------------------
# Protocol details
# ---------------------------------------------------------------------------------------------------------------


def test_http_midstream_searches_line_starts():
    s = Sample(
        "http", "tcp", 40000, 80,
        b"dy of the previous POST&x=1\r\nGET /next HTTP/1.1\r\nHost: example.com\r\n\r\n",
        b"ious response body</html>\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    )
    assert verdict("http", s, midstream=True) == YES
    assert verdict("http", s, midstream=False) == NO
    server_seen_first = replace(s, client=s.server, server=s.client, client_port=80, server_port=40000)
    assert verdict("http", server_seen_first, midstream=True) == YES
    body = replace(s, client=b"some body text\r\nwithout any request line\r\n", server=b"more text\r\n")
    assert verdict("http", body, midstream=True) == MAYBE and verdict("http", body, True, midstream=True) == NO


def test_http_request_rules():
    ctx = FlowContext("tcp", 40000, 80, False, False)
    probe = SPECS["http"].probe
    assert probe(b"GET / HTTP/1.1\r\n", b"", ctx) == MAYBE  # no answer yet
    assert probe(b"GET / HTTP/1.1\r\n", b"HTTP/1.1 200 OK\r\n", ctx) == YES
    assert probe(b"GET / HTTP/1.1\r\n", b"", last(ctx)) == YES
    assert probe(b"GET / HTTP/1.1\r\n", b"\x16\x03\x01", ctx) == MAYBE  # a foreign answer waits for the end
    assert probe(b"GET /", b"", ctx) == MAYBE
    for bad in (b"get / HTTP/1.1\r\n", b"GET  / HTTP/1.1\r\n", b"GET / HTTP/2.0\r\n", b"GET /\x01 HTTP/1.1\r\n",
                b"GET / HTTP/1.1 extra\r\n", b"GET /\r\n", b"GETTHISVERYLONGMETHODNAME / HTTP/1.1\r\n"):
        assert probe(bad, b"HTTP/1.1 200 OK\r\n", ctx) == NO, bad
    assert probe(b"GET " + b"/a" * 3000, b"", last(ctx)) == YES  # long URI cut by the capture
    assert probe(b"", b"HTTP/1.1 200 OK\r\n", last(ctx)) == YES  # only the answer was captured
    assert probe(b"", b"SSH-2.0-x\r\n", ctx) == NO


def test_ssl_rules():
    c, s = SSL_SAFARI.client, SSL_SAFARI.server
    probe = SPECS["ssl"].probe
    ctx = SSL_SAFARI.ctx()
    assert probe(c, b"", ctx) == YES  # a ClientHello is enough
    assert probe(b"", s, ctx) == YES  # so is a ServerHello
    assert probe(c[:3], b"", ctx) == MAYBE
    assert probe(c[:9] + b"\x02\x00" + c[11:], b"", ctx) == NO  # hello version 0x0200
    assert probe(b"\x16\x03\x05" + c[3:], b"", ctx) == NO  # record version 0x0305
    assert probe(H("1703030020"), b"", ctx) == MAYBE  # one record header: wait for the other side
    assert probe(H("1703030020"), b"", last(ctx)) == NO


def test_ssh_rules():
    ctx = FlowContext("tcp", 40000, 22, False, False)
    probe = SPECS["ssh"].probe
    assert probe(b"", b"SSH-2.0-OpenSSH_9.6\r\n", ctx) == YES
    assert probe(b"", b"Welcome\r\nSSH-2.0-OpenSSH_9.6\r\n", ctx) == YES  # RFC 4253 §4.2 pre-banner lines
    assert probe(b"SSH-1.99-x\n", b"", ctx) == YES
    assert probe(b"SSH-2.0", b"", ctx) == MAYBE
    for bad in (b"SSH-3.0-x\r\n", b"SSH-2.0-\r\n", b"SSH-2.0-a\x01b\r\n", b"SSX-2.0-x\r\n"):
        assert probe(bad, b"", ctx) == NO, bad


def test_dns_rules():
    probe = SPECS["dns"].probe
    q, r = DNS_UDP.client, DNS_UDP.server
    anywhere = FlowContext("udp", 40000, 40001, False, False)
    assert probe(q, r, anywhere) == YES  # query + matching response: no port needed
    assert probe(q, b"", anywhere) == MAYBE and probe(q, b"", last(anywhere)) == NO
    assert probe(q, b"", DNS_UDP.ctx(final=True)) == YES  # a lone query on port 53, last call
    assert probe(q, b"\x00\x00" + r[2:], anywhere) == NO  # other transaction id
    assert probe(q, b"\x00\x00" + r[2:], DNS_UDP.ctx()) == YES  # ... but two DNS messages on port 53
    assert probe(q[:2] + b"\x78" + q[3:], b"", DNS_UDP.ctx(final=True)) == NO  # opcode 15
    assert probe(q[:-3], b"", DNS_UDP.ctx(final=True)) == NO  # cut datagram
    assert probe(DNS_TCP.client[:5], b"", DNS_TCP.ctx()) == MAYBE


def test_dhcp_ntp_tftp_radius_rules():
    no_cookie = DHCP_DISCOVER.client[:236] + b"\0\0\0\0" + DHCP_DISCOVER.client[240:]
    assert verdict("dhcp", replace(DHCP_DISCOVER, client=no_cookie)) == NO
    assert verdict("dhcp", replace(DHCPV6_SOLICIT, client_port=40000, server_port=40001)) == NO  # needs 546/547
    assert verdict("ntp", replace(NTP_V4, client_port=40000, server_port=40001), final=True) == NO  # needs 123
    assert verdict("ntp", replace(NTP_V4, client=b"\x3f" + NTP_V4.client[1:]), final=True) == NO  # version 7
    assert verdict("tftp", replace(TFTP_RRQ, server_port=40001), final=True) == NO  # a request needs port 69
    assert verdict("tftp", replace(TFTP_RRQ, client=TFTP_RRQ.client.replace(b"octet", b"binary"))) == NO
    assert verdict("tftp", replace(TFTP_DATA_ACK, server=H("00040002")), final=True) == NO  # ACK of another block
    assert verdict("radius", replace(RADIUS_RFC, server=RADIUS_RFC.server[:1] + b"\x07" + RADIUS_RFC.server[2:])) == NO
    assert verdict("radius", replace(RADIUS_RFC, client=RADIUS_RFC.client + b"\0")) == NO  # length field != datagram


def test_echo_and_syslog_rules():
    assert verdict("echo", replace(ECHO_TCP, server=b"hello, world")) == NO
    assert verdict("echo", replace(ECHO_TCP, server_port=8007)) == NO
    assert verdict("echo", replace(ECHO_TCP, server=b"")) == MAYBE
    assert verdict("echo", replace(ECHO_TCP, server=b""), final=True) == YES
    probe = SPECS["syslog"].probe
    ctx = FlowContext("udp", 40000, 514, False, False)
    for bad in (b"<192>Oct 11 22:14:15 host", b"<013>Oct 11 22:14:15 host", b"<>Oct 11", b"<13>\x00\x01\x02\x03\x04",
                b"<13>", b"<html><body>"):
        assert probe(bad, b"", ctx) == NO, bad
    assert probe(b"<0>kernel: panic", b"", ctx) == YES
