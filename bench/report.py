"""From runs to the three outputs: the table, build/bench/results.json, build/bench/ratios.png.

Each side's cell is the median over its runs, with min and max. The ratio is ours / Linux;
`better` says which direction wins for that unit, and `advantage` turns the ratio around
where lower is better, so advantage > 1 always means ours is ahead.

Paired rows (bench/pairs.py): runs[side][k] of both sides come from pair k, measured one
right after the other, so the row's ratio is the median of the per-pair ratios, with their
min and max: a slow moment of the host hits both runs of a pair, not one side's median.
A polling twin's ratio pairs it with the Linux run of the same pair (Linux has no polling
variant). Unpaired rows compare the two medians, with the extreme combinations as range.

With a before image (BENCH_BEFORE, a third side 'before' in runs), each row also has
`before_ratio`: now (ours) against before, per pair, turned around where lower is better,
so that > 1 always means now is better; its median with min and max over the pairs. A
polling twin is compared with the before image's run of its base workload (the before
image runs its default mode only). The verdict line after the table names the rows whose
whole min-max lies below 1.
"""
import json

import hostcpu
import workloads as W

SIDES = ('ours', 'linux', 'host')
BEFORE = 'before'         # the third side with BENCH_BEFORE (bench/before.py)
NO_POLLING = 'no polling variant'


def stats(values):
    """{'median', 'min', 'max', 'n'} of the usable values, or None when there are none."""
    vs = [v for v in values if v is not None]
    if not vs:
        return None
    return {'median': W.median(vs), 'min': min(vs), 'max': max(vs), 'n': len(vs)}


def _entries(runs, side, name):
    """Entry per run index (None where that run has none)."""
    return [(r or {}).get(name) for r in runs.get(side) or []]


def pair_ratios(runs, w, other='linux'):
    """ours / other per pair index where both runs of the pair gave a figure (None where
    either did not). A polling twin is paired with the other side's run of its base
    workload."""
    base_name = W.poll_base(w) or w.name
    ours = _entries(runs, 'ours', w.name)
    theirs = _entries(runs, other, base_name)
    out = []
    for o, t in zip(ours, theirs):
        if o is None and t is None:
            continue            # no pair k here (the run lists also hold unpaired boots)
        ov = o and o.get('value')
        tv = t and t.get('value')
        out.append(ov / tv if ov and tv and ov > 0 and tv > 0 else None)
    return out


def advantage_of(ratio, better):
    if ratio is None:
        return None
    return 1 / ratio if better == W.LOWER else ratio


def cpu_per_1000(entries):
    """QEMU CPU seconds per 1,000 requests of each run that has both figures."""
    return [hostcpu.per_1000(e.get('cpu_s'), e.get('requests')) if e and e.get('value')
            is not None else None for e in entries]


def summarize(runs, selected=None, paired=()):
    """runs: {side: [ {workload: {'value', 'error', 'na'?, 'cpu_s'?, 'requests'?}} per run ]}
    -> rows. paired: the names of the workloads whose run k of each side form pair k."""
    rows = []
    sides = SIDES + (BEFORE,) if BEFORE in runs else SIDES
    for w in selected or W.WORKLOADS:
        row = {'name': w.name, 'title': w.title, 'unit': w.unit, 'better': w.better,
               'paired': w.name in paired}
        for side in sides:
            # A polling twin's host ceiling is its base workload's (the host has no twin).
            name = W.poll_base(w) or w.name if side == 'host' else w.name
            entries = [e for e in _entries(runs, side, name) if e is not None]
            s = stats([e.get('value') for e in entries])
            errors = sorted(set(e['error'] for e in entries if e.get('error')))
            row[side] = {'stats': s, 'errors': errors,
                         'na': bool(entries) and all(e.get('na') for e in entries),
                         'values': [e.get('value') for e in entries],
                         'cpu_per_1000': stats(cpu_per_1000(entries))}
        for side in ('linux', BEFORE) if W.poll_base(w) else ():
            if side in row:
                row[side] = {'stats': None, 'errors': [NO_POLLING], 'na': True, 'values': [],
                             'cpu_per_1000': None}
        if row['paired']:
            _paired(row, runs, w)
        else:
            _unpaired(row, w)
        if BEFORE in row:
            _before(row, runs, w)
        h = row['host']['stats']
        for side in ('ours', 'linux'):
            s = row[side]['stats']
            row[side]['of_ceiling'] = (s['median'] / h['median']
                                       if s and h and h['median'] > 0 and w.better == W.HIGHER
                                       else None)
        rows.append(row)
    return rows


def _paired(row, runs, w):
    ratios = pair_ratios(runs, w)
    r = stats(ratios)
    row['pairs'] = {'ratios': ratios, 'n': len(ratios)}
    if r is None:
        row.update(ratio=None, ratio_min=None, ratio_max=None, advantage=None,
                   advantage_min=None, advantage_max=None)
        return
    # The advantage is the ratio turned around where lower is better, so that `ahead`
    # says the same as the ratio column for an even number of pairs too.
    ends = sorted([advantage_of(r['min'], w.better), advantage_of(r['max'], w.better)])
    row.update(ratio=r['median'], ratio_min=r['min'], ratio_max=r['max'],
               advantage=advantage_of(r['median'], w.better), advantage_min=ends[0],
               advantage_max=ends[1])
    row['pairs']['n_used'] = r['n']


def _unpaired(row, w):
    o, l = row['ours']['stats'], row['linux']['stats']
    if o and l and l['median'] > 0 and o['median'] > 0:
        ratio = o['median'] / l['median']
        lo, hi = o['min'] / l['max'], o['max'] / l['min']
        if w.better == W.LOWER:
            adv, adv_lo, adv_hi = 1 / ratio, 1 / hi, 1 / lo
        else:
            adv, adv_lo, adv_hi = ratio, lo, hi
        row.update(ratio=ratio, ratio_min=lo, ratio_max=hi, advantage=adv,
                   advantage_min=adv_lo, advantage_max=adv_hi)
    else:
        row.update(ratio=None, ratio_min=None, ratio_max=None, advantage=None,
                   advantage_min=None, advantage_max=None)


def _before(row, runs, w):
    """row['before_ratio'] (> 1: now is better) with its min and max: paired rows over the
    per-pair ratios, unpaired rows from the two sides' medians (extremes as range)."""
    if row['paired']:
        ratios = [advantage_of(r, w.better) for r in pair_ratios(runs, w, BEFORE)]
        s = stats(ratios)
        row['before_pairs'] = {'ratios': ratios, 'n': len(ratios), 'n_used': s and s['n'] or 0}
        ends = s and (s['median'], s['min'], s['max'])
    else:
        now = row['ours']['stats']
        then = stats([e.get('value') for e in _entries(runs, BEFORE, W.poll_base(w) or w.name)
                      if e is not None])
        ends = None
        if now and then and now['median'] > 0 and then['median'] > 0 and now['min'] > 0 \
                and then['min'] > 0:
            ends = [advantage_of(now[a] / then[b], w.better)
                    for a, b in (('median', 'median'), ('min', 'max'), ('max', 'min'))]
            ends = [ends[0]] + sorted(ends[1:])
    row['before_ratio'], row['before_ratio_min'], row['before_ratio_max'] = ends or (None,) * 3


def before_cell(r):
    """now/before: '1.03 [0.91-1.12]' (> 1: now is better), with the pairs that gave a
    figure when some did not; unpaired rows marked so."""
    if r.get('before_ratio') is None:
        return '-'
    text = '%.2f [%.2f-%.2f]' % (r['before_ratio'], r['before_ratio_min'], r['before_ratio_max'])
    if not r['paired']:
        return text + ' unpaired'
    p = r['before_pairs']
    return text + (' %d/%d pairs' % (p['n_used'], p['n']) if p['n_used'] < p['n'] else '')


def before_verdict(rows):
    """The line after the table: the rows worse than before beyond the spread (their whole
    now/before min-max below 1), and the rows with nothing to compare."""
    rows = [r for r in rows if BEFORE in r]
    worse = ['%s %s' % (r['name'], before_cell(r)) for r in rows
             if r['before_ratio'] is not None and r['before_ratio_max'] < 1]
    line = ('worse than before beyond the spread: ' + ', '.join(worse) if worse
            else 'no row worse than before beyond the spread')
    missing = [r['name'] for r in rows if r['before_ratio'] is None]
    if missing:
        line += ' (no now/before figure: %s)' % ', '.join(missing)
    return line


def fmt(x, unit):
    if x is None:
        return '-'
    if unit in ('s', 'ms'):
        return '%.3f' % x if x < 10 else '%.2f' % x
    if x >= 100:
        return '{:,.0f}'.format(x)
    return '%.1f' % x


def cell(side, unit, reps):
    s = side['stats']
    if s is None:
        if side['na'] and side['errors']:
            return 'n/a (%s)' % side['errors'][0]
        if side['errors']:
            return 'failed: %s' % side['errors'][0]
        return 'n/a' if reps else '-'
    text = fmt(s['median'], unit)
    if s['n'] > 1:
        text += ' [%s-%s]' % (fmt(s['min'], unit), fmt(s['max'], unit))
    if side['errors']:
        text += ' (%d failed)' % len([v for v in side['values'] if v is None])
    return text


def verdict(row):
    a = row['advantage']
    if a is None:
        return ''
    if 0.95 <= a <= 1.05:
        return 'even'
    return 'ours %.2fx' % a if a > 1 else 'Linux %.2fx' % (1 / a)


def ratio_cell(r):
    """Paired: median of the per-pair ratios [min-max] and how many pairs gave one;
    unpaired: the ratio of the medians, marked so."""
    if r['ratio'] is None:
        return '-'
    if not r['paired']:
        return '%.3g unpaired' % r['ratio']
    text = '%.3g' % r['ratio']
    n = r['pairs'].get('n_used', 0)
    if n > 1:
        text += ' [%.3g-%.3g]' % (r['ratio_min'], r['ratio_max'])
    return text + ' %d/%d pairs' % (n, r['pairs']['n'])


def cpu_cell(side):
    s = side.get('cpu_per_1000')
    if not s:
        return '-'
    text = '%.3f' % s['median']
    if s['n'] > 1:
        text += ' [%.3f-%.3f]' % (s['min'], s['max'])
    return text


HEAD = ('workload', 'unit', 'better', 'ours', 'Linux', 'ours/Linux', 'ahead',
        'CPU s/1k ours', 'CPU s/1k Linux', 'host ceiling')
# With a before image: its cell after Linux', now/before after `ahead`, its CPU last.
HEAD_BEFORE = ('workload', 'unit', 'better', 'ours', 'Linux', 'before', 'ours/Linux', 'ahead',
               'now/before', 'CPU s/1k ours', 'CPU s/1k Linux', 'CPU s/1k before',
               'host ceiling')


def table(rows, reps=1):
    """The table; with a before image, its columns and the verdict line after it."""
    before = any(BEFORE in r for r in rows)
    head = HEAD_BEFORE if before else HEAD
    body = []
    for r in rows:
        ceiling = r['host']['stats']
        ceil = ''
        if ceiling:
            ceil = fmt(ceiling['median'], r['unit'])
            parts = ['%s %.0f%%' % (n, 100 * r[k]['of_ceiling'])
                     for k, n in (('ours', 'ours'), ('linux', 'Linux'))
                     if r[k]['of_ceiling'] is not None]
            if parts:
                ceil += ' (' + ', '.join(parts) + ')'
        cols = dict(zip(HEAD, (r['title'], r['unit'], r['better'],
                               cell(r['ours'], r['unit'], reps), cell(r['linux'], r['unit'], reps),
                               ratio_cell(r), verdict(r), cpu_cell(r['ours']),
                               cpu_cell(r['linux']), ceil)))
        if before:
            cols.update({'before': cell(r[BEFORE], r['unit'], reps) if BEFORE in r else '-',
                         'now/before': before_cell(r),
                         'CPU s/1k before': cpu_cell(r[BEFORE]) if BEFORE in r else '-'})
        body.append([cols[h] for h in head])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    line = lambda cols: '  '.join(str(c).ljust(w) for c, w in zip(cols, widths)).rstrip()
    out = [line(head), line(['-' * w for w in widths])]
    out += [line(b) for b in body]
    if before:
        out += ['', before_verdict(rows)]
    return '\n'.join(out)


def write_json(path, doc):
    with open(path, 'w') as f:
        json.dump(doc, f, indent=1, sort_keys=True, default=str)


def chart(rows, path, title='ours vs Linux guest, same QEMU (TCG)'):
    """Bar chart of advantage (ours/Linux, >1 = ours ahead; paired rows: the per-pair median)
    with min-max whiskers, and of each side's share of the host's page-cache ceiling.
    Returns path, or None without matplotlib."""
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    names = [r['title'] for r in rows]
    ys = list(range(len(rows)))[::-1]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(13, 0.45 * len(rows) + 2),
                                  gridspec_kw={'width_ratios': [3, 2]})
    for y, r in zip(ys, rows):
        a = r['advantage']
        if a is None:
            why = 'n/a'
            if r['ours']['stats'] is None and r['ours']['errors']:
                why = 'ours: ' + r['ours']['errors'][0]
            elif r['linux']['stats'] is None and r['linux']['errors']:
                why = 'Linux: ' + r['linux']['errors'][0]
            ax.text(1, y, ' ' + why[:48], va='center', fontsize=8, color='gray')
            continue
        colour = '#2a7' if a >= 1 else '#c44'
        ax.barh(y, a - 1, left=1, color=colour, height=0.6)
        ax.errorbar([a], [y], xerr=[[a - r['advantage_min']], [r['advantage_max'] - a]],
                    fmt='none', ecolor='black', capsize=3, lw=1)
        ax.text(max(a, r['advantage_max']) * 1.1 if a >= 1 else min(a, r['advantage_min']) / 1.1,
                y, '%.2fx' % a, va='center', ha='left' if a >= 1 else 'right', fontsize=8)
    ax.set_xscale('log')
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.axvline(1, color='black', lw=1)
    ax.set_yticks(ys)
    ax.set_yticklabels(names, fontsize=9)
    lo = min([r['advantage_min'] for r in rows if r['advantage']] + [0.5])
    hi = max([r['advantage_max'] for r in rows if r['advantage']] + [2])
    ax.set_xlim(lo / 2, hi * 2)
    from matplotlib.ticker import FuncFormatter, NullFormatter
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: '%gx' % v))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel('advantage: ours over Linux (log; > 1 = ours ahead; paired rows: median of the '
                  'pairs, whiskers min-max over them)')
    ax.set_title(title, fontsize=10)
    w = 0.38
    for y, r in zip(ys, rows):
        for k, (side, colour) in enumerate((('ours', '#2a7'), ('linux', '#47c'))):
            f = r[side]['of_ceiling']
            if f is not None:
                ax2.barh(y + (w / 2 if k == 0 else -w / 2), 100 * f, height=w, color=colour)
    ax2.set_yticks(ys)
    ax2.set_ylim(-0.6, len(rows) - 0.4)
    ax2.set_yticklabels([])
    ax2.set_xscale('log')
    if not any(r[side]['of_ceiling'] for r in rows for side in ('ours', 'linux')):
        ax2.set_xlim(1, 1000)        # no read rows: an empty panel, not a singular scale
    ax2.set_xlabel('% of the host reading the image from page cache (log)')
    ax2.axvline(100, color='black', lw=1)
    ax2.xaxis.set_major_formatter(FuncFormatter(lambda v, _: '%g%%' % v))
    ax2.xaxis.set_minor_formatter(NullFormatter())
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in ('#2a7', '#47c')]
    ax2.legend(handles, ['ours', 'Linux'], fontsize=8, loc='lower right')
    ax2.set_title('share of the physical ceiling (reads)', fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
