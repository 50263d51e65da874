package netcfg

// The tests of package netcfg_test use the fake host of package
// netcfg/netcfgtest, which imports netcfg, so they cannot be in package
// netcfg themselves. These are the few internals they look at.

// ExpandFeatures is expandFeatures.
var ExpandFeatures = expandFeatures

// Saves counts the journal's writes.
func (j *Journal) Saves() int { return j.saves }
