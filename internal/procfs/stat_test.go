package procfs

import (
	"os"
	"testing"
)

func TestParseStat(t *testing.T) {
	line := "4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n"
	st, err := parseStat("stat", line)
	if err != nil {
		t.Fatal(err)
	}
	if st.Name != "a (weird) name" || st.State != 'S' || st.Start != 987654 {
		t.Errorf("parsed %+v, want name %q state S start 987654", st, "a (weird) name")
	}
	for _, bad := range []string{"", "4242 no name S 1", "4242 (x) S 1 2 3", "4242 (x) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 notanumber 1"} {
		if _, err := parseStat("stat", bad); err == nil {
			t.Errorf("parseStat(%q) succeeded", bad)
		}
	}
}

func TestReadPIDSelf(t *testing.T) {
	st, err := ReadPID(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if st.Start == 0 || st.State == 0 || st.Name == "" {
		t.Errorf("own stat %+v has empty fields", st)
	}
	start, err := StartTime(os.Getpid())
	if err != nil || start != st.Start {
		t.Errorf("StartTime = %d, %v; want %d", start, err, st.Start)
	}
	if _, err := ReadPID(-1); err == nil {
		t.Error("ReadPID(-1) succeeded")
	}
}
