package report

import "sort"

// pt is a point in chart units: X in [0, plotWidth], V the raw value.
type pt struct {
	X float64
	V float64
	// T is milliseconds from the experiment's start, for the hover read-out.
	T int64
}

// downsample reduces pts (sorted by X) to at most 4 points per bucket of width w: the first,
// the lowest, the highest and the last (M4). A line through them covers exactly the pixels the
// full series would, so no spike, dip or step is lost; averaging would flatten a one-sample
// breach into the noise, which is the one thing a game-day chart must never do.
func downsample(pts []pt, w float64) []pt {
	if len(pts) <= 4 || w <= 0 {
		return pts
	}
	out := make([]pt, 0, min(len(pts), 4096))
	i := 0
	for i < len(pts) {
		b := int(pts[i].X / w)
		j := i
		lo, hi := i, i
		for j < len(pts) && int(pts[j].X/w) == b {
			if pts[j].V < pts[lo].V {
				lo = j
			}
			if pts[j].V > pts[hi].V {
				hi = j
			}
			j++
		}
		keep := []int{i, lo, hi, j - 1}
		sort.Ints(keep)
		prev := -1
		for _, k := range keep {
			if k != prev {
				out = append(out, pts[k])
				prev = k
			}
		}
		i = j
	}
	return out
}

// thinMarks keeps one mark per bucket of width w (the first in it), so that every bucket that
// had a breach still shows one while a breach lasting an hour does not draw 14,000 circles.
func thinMarks(xs []float64, w float64) []int {
	var keep []int
	last := -1
	for i, x := range xs {
		b := int(x / w)
		if b != last || w <= 0 {
			keep = append(keep, i)
			last = b
		}
	}
	return keep
}
