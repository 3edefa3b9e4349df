"""`robot-runtime serve-policy`: an openpi-compatible policy server without a model, replaying a recorded
episode or a scripted motion, with optional latency and injected faults, for dry runs and client tests.

Safe by default: it listens on 127.0.0.1 only; listening on any other address needs an API key, as its
replies move arms. Messages are limited in size, and clients get one-line errors, never tracebacks."""

from __future__ import annotations

import argparse
import ipaddress
import os
from pathlib import Path

import numpy as np

from apps.common import UsageError, console, number, print_error
from apps.run import API_KEY_ENV
from robot_runtime.policy.served import DeltaActions, EpisodePolicy, ScriptedPolicy, bool_mask
from robot_runtime.policy.server import FAULT_KINDS, Fault, PerConnectionPolicy, PolicyServer
from robot_runtime.policy.wire import DEFAULT_MAX_MESSAGE_BYTES, MIB

LOOPBACK_NAMES = ("localhost",)
PORT = number(int, at_least=0, at_most=65535)
MAX_MESSAGE_MB = 4096
"""Beyond what one message of a control loop could sensibly carry."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve-policy", help="serve a recorded episode or a scripted motion as an openpi policy server"
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1, this machine only); any other, such as 0.0.0.0, needs --api-key",
    )
    parser.add_argument(
        "--port", type=PORT, default=8000, help="port to listen on; 0 picks a free one (default: 8000, as openpi)"
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--replay", type=Path, metavar="DATASET", help="serve the actions of a recorded episode of this dataset")
    source.add_argument("--script", action="store_true", help="serve a smooth swing around the first state each connection sends")
    parser.add_argument(
        "--episode", type=number(int, at_least=0), default=0, help="with --replay: the episode index (default: 0)"
    )
    parser.add_argument("--horizon", type=number(int, at_least=1), default=50, help="actions per reply (default: 50, as pi0)")
    parser.add_argument(
        "--amplitude", type=number(float), default=5.0, help="with --script: swing amplitude in the state's units (default: 5)"
    )
    parser.add_argument(
        "--period-s", type=number(float, above=0), default=4.0, help="with --script: swing period in seconds (default: 4)"
    )
    parser.add_argument(
        "--fps",
        type=number(float, above=0),
        default=30.0,
        help="with --script: the time step between the actions of a reply (default: 30)",
    )
    parser.add_argument(
        "--deltas",
        type=_mask,
        metavar="MASK",
        help="serve actions as deltas from each observation's state where openpi's make_bool_mask(MASK) is true, "
        "e.g. 6,-1,6,-1 (joints or poses as deltas, grippers absolute)",
    )
    parser.add_argument(
        "--latency-ms",
        type=number(float, at_least=0),
        default=0.0,
        help="extra delay before every reply, as from a slow model or network",
    )
    parser.add_argument(
        "--fault",
        type=_fault,
        action="append",
        default=[],
        metavar="KIND@N[+]",
        help=f"on the Nth request (or from it on, with +) inject a fault: {', '.join(FAULT_KINDS)}; repeatable",
    )
    parser.add_argument(
        "--stall-s",
        type=number(float, at_least=0),
        default=3600.0,
        help="how long a stall fault withholds its reply (default: 3600)",
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get(API_KEY_ENV),
        help=f"accept only clients sending 'Authorization: Api-Key KEY' (default: ${API_KEY_ENV}); required off loopback",
    )
    parser.add_argument(
        "--max-message-mb",
        type=number(float, above=0, at_most=MAX_MESSAGE_MB),
        default=DEFAULT_MAX_MESSAGE_BYTES / MIB,
        help=f"refuse larger observations (default: {DEFAULT_MAX_MESSAGE_BYTES / MIB:g}, room for 30 raw 640x480 images)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not args.api_key and not is_loopback(args.host):
        raise UsageError(
            f"--host {args.host} listens beyond this machine and needs --api-key (or ${API_KEY_ENV}): anyone who can "
            "connect would drive the arms of its clients; use --host 127.0.0.1 for this machine only"
        )
    policy: PerConnectionPolicy
    policy, what = _policy(args)
    if args.deltas is not None:
        policy = DeltaActions(policy, args.deltas)
        what += f", as deltas from the state where {args.deltas.astype(int).tolist()}"
    server = PolicyServer(
        policy,
        host=args.host,
        port=args.port,
        latency_s=args.latency_ms / 1000,
        faults=args.fault,
        stall_s=args.stall_s,
        api_key=args.api_key,
        max_message_bytes=round(args.max_message_mb * MIB),
    )
    try:
        server.start()
    except OSError as exc:
        print_error(exc)
        return 1
    extras = [f"{args.latency_ms:g} ms latency"] if args.latency_ms else []
    extras += [f"faults {', '.join(map(str, args.fault))}"] if args.fault else []
    extras += ["API key required"] if args.api_key else []
    details = f" with {', '.join(extras)}" if extras else ""
    try:
        console.print(f"serving {what}{details} on {server.url}: Ctrl-C to stop", markup=False, soft_wrap=True)
        server.serve_forever()
    except KeyboardInterrupt:
        server.stop()
        console.print(f"stopped after {server.requests} requests")
    return 0


def is_loopback(host: str) -> bool:
    """True for addresses that only this machine can reach: 127.0.0.0/8, ::1 and localhost."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name other than localhost may resolve to any interface
        return False


def _policy(args: argparse.Namespace) -> tuple[EpisodePolicy | ScriptedPolicy, str]:
    """The policy to serve and a few words on what it is."""
    if args.script:
        policy = ScriptedPolicy(args.horizon, args.fps, args.amplitude, args.period_s)
        return (
            policy,
            (
                f"a scripted swing (amplitude {args.amplitude:g} around each connection's first state, period "
                f"{args.period_s:g} s, {args.fps:g} fps, horizon {args.horizon})"
            ),
        )
    episode = EpisodePolicy.from_dataset(args.replay, args.episode, args.horizon)
    return (
        episode,
        (
            f"episode {args.episode} of {args.replay} ({len(episode.actions)} actions at {episode.fps:g} fps, horizon "
            f"{args.horizon})"
        ),
    )


def _fault(text: str) -> Fault:
    try:
        return Fault.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _mask(text: str) -> np.ndarray:
    try:
        return bool_mask([int(part) for part in text.split(",")])
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected non-zero counts like 6,-1,6,-1 (openpi's make_bool_mask)") from None
