"""SSH parser: banners and negotiated algorithms (RFC 4253), threat 2008; checked against tshark on a real
capture and against hand-built bytes."""
from __future__ import annotations

import struct

from conftest import SHARED, run
from parsertest import drive
from nvpcap.protocols.base import CLIENT, SERVER
from nvpcap.protocols.ssh import SshParser, negotiate


def kexinit(kex: str, hostkey: str, cipher: str, mac: str, comp: str = "none") -> bytes:
    """An SSH_MSG_KEXINIT binary packet built per RFC 4253 §6 and §7.1 (no MAC yet, so none appended)."""
    lists = [kex, hostkey, cipher, cipher, mac, mac, comp, comp, "", ""]
    payload = bytes([20]) + b"\x11" * 16 + b"".join(struct.pack("!I", len(x)) + x.encode() for x in lists)
    payload += b"\x00" + b"\x00\x00\x00\x00"  # first_kex_packet_follows, reserved
    pad = 8 - (len(payload) + 5) % 8
    pad += 8 if pad < 4 else 0
    return struct.pack("!IB", len(payload) + pad + 1, pad) + payload + b"\x00" * pad


def test_banners_and_negotiation_from_spec_bytes():
    steps = [(SERVER, b"SSH-2.0-OpenSSH_9.6 Debian\r\n"), (CLIENT, b"SSH-2.0-paramiko_3.4\r\n"),
             (CLIENT, kexinit("curve25519-sha256,diffie-hellman-group14-sha256", "ssh-ed25519,rsa-sha2-512",
                              "aes256-ctr,chacha20-poly1305@openssh.com", "hmac-sha2-256")),
             (SERVER, kexinit("diffie-hellman-group14-sha256,curve25519-sha256", "rsa-sha2-512",
                              "chacha20-poly1305@openssh.com,aes256-ctr", "hmac-sha2-512,hmac-sha2-256"))]
    for split in (0, 3):  # whole messages, and cut into 3-byte segments
        rec = drive(SshParser, steps, split=split)
        assert rec.events == [{
            "client": "SSH-2.0-paramiko_3.4", "server": "SSH-2.0-OpenSSH_9.6 Debian", "version": 2,
            "kex_alg": "curve25519-sha256", "host_key_alg": "rsa-sha2-512", "cipher_alg": "aes256-ctr",
            "mac_alg": "hmac-sha2-256", "compression_alg": "none"}]
        assert rec.threats == []


def test_ssh1_raises_threat_2008_and_199_does_not():
    rec = drive(SshParser, [(CLIENT, b"SSH-1.5-old\r\n"), (SERVER, b"SSH-1.99-srv\r\n")])
    assert rec.threats == [(2008, CLIENT)]
    assert rec.events[0]["version"] == 1


def test_client_first_rule_client_list_wins():
    assert negotiate(["a", "b"], ["b", "a"]) == "a"
    assert negotiate(["x"], ["y"]) is None


def test_hostile_bytes_never_raise():
    import random
    rnd = random.Random(7)
    for _ in range(300):
        steps = [(rnd.randint(0, 1), b"SSH-2.0-x\r\n" + bytes(rnd.randrange(256) for _ in range(rnd.randint(0, 80))))
                 for _ in range(rnd.randint(1, 4))]
        drive(SshParser, steps, split=rnd.choice((0, 1, 7)))
    drive(SshParser, [(CLIENT, b"SSH-2.0-x\r\n" + struct.pack("!IB", 0xFFFFFFFF, 4))])  # absurd length


def test_real_capture_matches_tshark(shared_pcaps):
    # tshark -r ssh__ndpi__ssh.pcap -Y ssh -T fields -e ssh.protocol -e ssh.kex_algorithms
    #   -e ssh.encryption_algorithms_client_to_server: frames 4 (server) / 6 (client) banners; both KEXINITs list
    #   diffie-hellman-group-exchange-sha256 first and aes128-ctr first
    #   (the second flow, port 8000: SSH-2.0-APACHE-SSHD-2.5.0 / OpenSSH_8.2p1; LABELS.csv has both as ssh)
    events = run(SHARED / "ssh__ndpi__ssh.pcap").app_events("ssh")
    assert sorted(e["ssh"]["server"] for e in events) == ["SSH-2.0-APACHE-SSHD-2.5.0", "SSH-2.0-OpenSSH_5.3"]
    e = events[0]["ssh"]
    assert (e["server"], e["client"]) == ("SSH-2.0-OpenSSH_5.3", "SSH-2.0-OpenSSH_5.6")
    assert e["kex_alg"] == "diffie-hellman-group-exchange-sha256"
    assert e["cipher_alg"] == "aes128-ctr"
    assert events[0]["community_id"].startswith("1:") and events[0]["dest_port"] == 22
