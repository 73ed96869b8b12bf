"""Print what following a run live costs: the events file's write per event (in the run's own
thread), and how soon a follower polling it the way the operator station does sees an event.

    python benchmarks/events_file.py [--events 2000]
"""

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

from rig.operator.app import STREAM_POLL_S
from rig.plugin.events import EventBus, MeasurementJudged
from rig.plugin.progress import EventLog, follow_events


def measurement(i):
    return MeasurementJudged(
        requirement="TT-SAF-03",
        name="exception_code",
        value=3.0,
        unit="",
        value_text="3",
        limit_text="= 3",
        verdict="PASS",
        note=f"probe {i}",
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.jsonl"
        bus = EventBus()
        bus.subscribe(EventLog(path))
        costs = []
        for i in range(args.events):
            e = measurement(i)
            t0 = time.perf_counter()
            bus.publish(e)
            costs.append((time.perf_counter() - t0) * 1e6)
        costs.sort()
        print(f"events file write per event ({args.events} events, in the publishing thread):")
        p99 = costs[int(0.99 * len(costs))]
        print(
            f"  median {statistics.median(costs):7.1f} us   p99 {p99:7.1f} us"
            f"   max {costs[-1]:7.1f} us"
        )

        # a follower polling every STREAM_POLL_S, as a page's stream does: event-to-seen latency
        path2 = Path(tmp) / "follow.jsonl"
        log = EventLog(path2)
        published: dict[str, float] = {}
        seen: dict[str, float] = {}
        done = threading.Event()

        def follow():
            offset = 0
            while not done.is_set() or len(seen) < len(published):
                events, offset = follow_events(path2, offset)
                now = time.perf_counter()
                for e in events:
                    seen.setdefault(e["note"], now)
                time.sleep(STREAM_POLL_S)

        follower = threading.Thread(target=follow)
        follower.start()
        for i in range(40):
            e = measurement(i)
            published[e.note] = time.perf_counter()
            log(e)
            time.sleep(0.037)  # spreads the events over the poll period
        done.set()
        follower.join(10)
        lat = sorted((seen[k] - published[k]) * 1e3 for k in published if k in seen)
        print(f"follower (poll every {STREAM_POLL_S * 1e3:.0f} ms) sees an event after:")
        print(
            f"  median {statistics.median(lat):6.1f} ms   max {lat[-1]:6.1f} ms"
            f"   ({len(lat)}/{len(published)} seen)"
        )


if __name__ == "__main__":
    main()
