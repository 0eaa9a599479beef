#!/usr/bin/python3
"""A python3-libtorrent downloader (or seeder) for the BitTorrent tests and benchmark.

Runs under Debian's /usr/bin/python3 (python3-libtorrent is only installed for it). Everything
that could reach beyond loopback is off: DHT, local service discovery, UPnP, NAT-PMP; uTP is
off too (slow on loopback), so peers speak TCP only, and outgoing handshakes are plain (no MSE).

  lt_client.py --torrent F | --magnet URI  --save DIR  [--peer HOST:PORT]... [--no-webseed]
               [--no-tracker] [--listen PORT] [--ready FILE] [--stay SECONDS] [--timeout S]
               [--report FILE] [--seed]

Prints one JSON line when done: state, seconds (and transfer_seconds, from the first payload
byte), payload bytes down/up, the peers it talked to.
With --report, the same JSON is also written to FILE (and refreshed while staying).
Exit status 0 when the download completed (or, with --seed, when seeding started).
"""

import argparse
import json
import os
import sys
import time

import libtorrent as lt


def session(listen_port):
    settings = {
        "listen_interfaces": f"127.0.0.1:{listen_port}",
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_outgoing_utp": False,
        "enable_incoming_utp": False,
        "enable_outgoing_tcp": True,
        # Plain BitTorrent handshakes only: libtorrent otherwise opens with an encrypted (MSE)
        # handshake and retries in plain a second later when the peer does not speak MSE.
        "out_enc_policy": int(lt.enc_policy.disabled),
        "in_enc_policy": int(lt.enc_policy.enabled),
        "enable_incoming_tcp": True,
        # Every peer of these tests lives on 127.0.0.1.
        "allow_multiple_connections_per_ip": True,
        "announce_to_all_trackers": True,
        "alert_mask": lt.alert.category_t.error_notification
        | lt.alert.category_t.status_notification,
        "user_agent": "interop-lt",
        "peer_fingerprint": "-LT2000-",
    }
    return lt.session(settings)


def peers_of(handle):
    return sorted(
        {f"{p.ip[0]}:{p.ip[1]} {p.client.decode('utf-8', 'replace') if isinstance(p.client, bytes) else p.client}"
         for p in handle.get_peer_info()}
    )


def report(args, handle, started, state):
    st = handle.status()
    result = {
        "state": state,
        "seconds": round(time.time() - started, 3),
        "progress": st.progress,
        "downloaded": st.total_payload_download,
        "uploaded": st.total_payload_upload,
        "peers": peers_of(handle),
        "seen": sorted(SEEN),
    }
    if args.report:
        tmp = args.report + ".tmp"
        with open(tmp, "w") as f:
            json.dump(result, f)
        os.replace(tmp, args.report)
    return result


SEEN = set()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--torrent")
    ap.add_argument("--magnet")
    ap.add_argument("--save", required=True)
    ap.add_argument("--peer", action="append", default=[])
    ap.add_argument("--no-webseed", action="store_true")
    ap.add_argument("--no-tracker", action="store_true")
    ap.add_argument("--listen", type=int, default=0)
    ap.add_argument("--ready")
    ap.add_argument("--stay", type=float, default=0.0)
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--report")
    ap.add_argument("--seed", action="store_true", help="seed mode: the data is in --save")
    args = ap.parse_args()

    ses = session(args.listen)
    if args.torrent:
        ti = lt.torrent_info(args.torrent)
        if args.no_webseed:
            ti.set_web_seeds([])
        atp = lt.add_torrent_params()
        atp.ti = ti
    else:
        atp = lt.parse_magnet_uri(args.magnet)
        if args.no_webseed:
            atp.url_seeds = []
    if args.no_tracker:
        atp.trackers = []
        if args.torrent:
            atp.ti.clear_trackers() if hasattr(atp.ti, "clear_trackers") else None
    atp.save_path = args.save
    if args.seed:
        atp.flags |= lt.torrent_flags.seed_mode
    handle = ses.add_torrent(atp)
    if args.no_tracker:
        handle.replace_trackers([])
    for peer in args.peer:
        host, port = peer.rsplit(":", 1)
        handle.connect_peer((host.strip("[]"), int(port)))
    if args.ready:
        with open(args.ready, "w") as f:
            f.write(str(ses.listen_port()))

    started = time.time()
    deadline = started + args.timeout
    done_at = None
    first_at = None  # when the first payload byte had arrived
    offered = 0  # the 5-second period in which the direct peers were last offered
    while time.time() < deadline:
        for p in handle.get_peer_info():
            SEEN.add(f"{p.ip[0]}:{p.ip[1]}")
        st = handle.status()
        if first_at is None and st.total_payload_download > 0:
            first_at = time.time()
        if args.seed and st.state == lt.torrent_status.seeding and done_at is None:
            done_at = time.time()
            report(args, handle, started, "seeding")
        if not args.seed and st.is_seeding and done_at is None:
            done_at = time.time()
            report(args, handle, started, "complete")
        if done_at is not None and time.time() >= done_at + args.stay:
            break
        if args.report and done_at is not None:
            report(args, handle, started, "complete" if not args.seed else "seeding")
        # Re-offer the direct peers: libtorrent drops a peer that has nothing for it yet.
        period = int(time.time() - started) // 5
        if not st.is_seeding and args.peer and period != offered:
            offered = period
            for peer in args.peer:
                host, port = peer.rsplit(":", 1)
                handle.connect_peer((host.strip("[]"), int(port)))
        # Fine-grained while downloading: `seconds` is only as exact as this poll (a 256 MiB
        # download takes about a second here), coarse afterwards.
        time.sleep(0.1 if done_at is not None else 0.005)
    state = "complete" if handle.status().is_seeding else "timeout"
    if args.seed:
        state = "seeding" if done_at else "timeout"
    result = report(args, handle, started, state)
    if done_at is not None and not args.seed:
        result["seconds"] = round(done_at - started, 3)
        if first_at is not None:
            # From the first payload byte: libtorrent sends its first requests on its 500 ms
            # tick, whoever the seeder is.
            result["transfer_seconds"] = round(done_at - first_at, 3)
    print(json.dumps(result), flush=True)
    return 0 if state in ("complete", "seeding") else 1


if __name__ == "__main__":
    sys.exit(main())
