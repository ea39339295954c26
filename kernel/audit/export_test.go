package audit

// HeldGaps is how many serials the spool says a reader held in gaps not
// yet counted (within the reassembly timeout) when it last wrote it.
func HeldGaps(sp *Spool) uint64 {
	_, n := sp.suspects()
	return n
}
