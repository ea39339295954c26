package main

import (
	"math"
	"math/rand/v2"
	"sort"
)

// summary describes a sample the way the report shows it: the median is
// the figure, the quartiles and extremes are its spread.
type summary struct {
	N      int     `json:"n"`
	Median float64 `json:"median"`
	P25    float64 `json:"p25"`
	P75    float64 `json:"p75"`
	P99    float64 `json:"p99"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

func summarize(xs []float64) summary {
	if len(xs) == 0 {
		return summary{}
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return summary{
		N:      len(s),
		Median: quantile(s, 0.50),
		P25:    quantile(s, 0.25),
		P75:    quantile(s, 0.75),
		P99:    quantile(s, 0.99),
		Min:    s[0],
		Max:    s[len(s)-1],
	}
}

// quantile interpolates linearly between the closest ranks of a sorted
// sample, so small samples do not jump between neighbours.
func quantile(sorted []float64, q float64) float64 {
	switch len(sorted) {
	case 0:
		return math.NaN()
	case 1:
		return sorted[0]
	}
	pos := q * float64(len(sorted)-1)
	lo := int(math.Floor(pos))
	hi := int(math.Ceil(pos))
	frac := pos - float64(lo)
	return sorted[lo] + (sorted[hi]-sorted[lo])*frac
}

func round(x float64, digits int) float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return x
	}
	p := math.Pow(10, float64(digits))
	return math.Round(x*p) / p
}

// medianCI95 is a percentile-bootstrap 95% interval for the median of xs:
// how far the reported median could move with another set of rounds. A
// fixed seed keeps the report reproducible from the same samples.
func medianCI95(xs []float64) (lo, hi float64) {
	if len(xs) < 3 {
		return math.NaN(), math.NaN()
	}
	rng := rand.New(rand.NewPCG(1, 2))
	const resamples = 2000
	meds := make([]float64, resamples)
	buf := make([]float64, len(xs))
	for i := range meds {
		for j := range buf {
			buf[j] = xs[rng.IntN(len(xs))]
		}
		sort.Float64s(buf)
		meds[i] = quantile(buf, 0.5)
	}
	sort.Float64s(meds)
	return quantile(meds, 0.025), quantile(meds, 0.975)
}
