#!/usr/bin/env python3
"""Times the same Google Benchmark filter in two or more builds side by side.

Round after round, each binary runs the filter once (one repetition each), so that all of them
see the same machine load; prints, per benchmark, the min and median over the rounds of each
binary and the ratios last / first. FIELD=cpu_time (environment) compares CPU instead of wall
time: on a machine whose cores other jobs share, the process's CPU time of a single-threaded
benchmark is not inflated by the time it spends descheduled.

  FIELD=cpu_time scripts/bench_side_by_side.py base=/tmp/main/build/bench/bench_kernels,new=build/bench/bench_kernels \\
      'BM_Packed/N:4096/K:4096/bits:(4|3)/tokens:(1|8)/threads:1/path:2/' 11
"""
import json
import os
import statistics
import subprocess
import sys


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    binaries = dict(item.split('=', 1) for item in sys.argv[1].split(','))
    benchmark_filter, rounds = sys.argv[2], int(sys.argv[3])
    field = os.environ.get('FIELD', 'real_time')
    times = {}
    for _ in range(rounds):
        for name, path in binaries.items():
            out = subprocess.run([path, '--benchmark_filter=' + benchmark_filter, '--benchmark_format=json',
                                  '--benchmark_min_time=0.1'] + sys.argv[4:],
                                 capture_output=True, text=True, check=True).stdout
            for b in json.loads(out)['benchmarks']:
                times.setdefault(b['name'], {}).setdefault(name, []).append(b[field])
    names = list(binaries)
    print('%-62s ' % ('benchmark (%s, %d rounds)' % (field, rounds)) +
          ' '.join('%22s' % (n + ' min / median') for n in names) + '  %s/%s min  median' % (names[-1], names[0]))
    for bench, per_binary in times.items():
        mins = [min(per_binary[n]) for n in names]
        medians = [statistics.median(per_binary[n]) for n in names]
        print('%-62s ' % bench + ' '.join('%10.1f / %9.1f' % (a, b) for a, b in zip(mins, medians)) +
              '  %9.3f  %6.3f' % (mins[-1] / mins[0], medians[-1] / medians[0]))


if __name__ == '__main__':
    main()
