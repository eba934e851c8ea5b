package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/pith-os/pith/cloudconfig"
	"github.com/pith-os/pith/cloudconfig/apply"
	"github.com/pith-os/pith/internal/pithdtest"
)

// TestUserDataKeysReachPithd: a cloud-config with keys issue 17 found
// ignored, turned into the drop-in's variables and settings.json as the
// first-boot stage writes them, and `pithd run` started with them as
// systemd would start it honours them: the reboot lock of locksmith's group allows max-holders
// machines, the member is named after the hostname, and
// pith.schedule.enabled: false leaves the fleet API unserved.
func TestUserDataKeysReachPithd(t *testing.T) {
	client := fmt.Sprintf("http://127.0.0.1:%d", pithdtest.FreePort(t))
	peer := fmt.Sprintf("http://127.0.0.1:%d", pithdtest.FreePort(t))
	ud := "#cloud-config\nhostname: keys1\ncoreos:\n  locksmith: {group: db}\n  etcd2:\n" +
		"    listen-client-urls: " + client + "\n    advertise-client-urls: " + client + "\n" +
		"    listen-peer-urls: " + peer + "\n    initial-advertise-peer-urls: " + peer + "\n" +
		"pith:\n  update: {max-holders: 3}\n  schedule: {enabled: false}\n"
	c, rep := cloudconfig.ParseCloudConfig([]byte(ud))
	if rep.HasErrors() {
		t.Fatal(rep.Format("user-data"))
	}
	dir := t.TempDir()
	// What the first-boot stage writes: the drop-in's variables (systemd
	// passes them to pithd) and settings.json.
	for k, v := range apply.AgentEnv(c) {
		t.Setenv(k, v)
	}
	settings, _ := json.Marshal(c.Settings())
	if err := os.WriteFile(filepath.Join(dir, "settings.json"), settings, 0o644); err != nil {
		t.Fatal(err)
	}
	pithdtest.Start(t, pithdtest.Binary(t), filepath.Join(dir, "pithd.log"), "run", "--data-dir", filepath.Join(dir, "kv"),
		"--update-settings", filepath.Join(dir, "settings.json"), "--update-conf", "/nonexistent")

	get := func(path string, v any) (int, error) {
		resp, err := http.Get(client + path)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if v != nil && resp.StatusCode == http.StatusOK {
			return resp.StatusCode, json.Unmarshal(b, v)
		}
		return resp.StatusCode, nil
	}
	pithdtest.Poll(t, "reboot lock of group db allows 3", func() (bool, string) {
		var st struct{ Max, Semaphore int }
		code, err := get("/pith/v1/locks?group=db", &st)
		return err == nil && code == 200 && st.Max == 3 && st.Semaphore == 3, fmt.Sprintf("%d %+v %v", code, st, err)
	})
	var self struct{ Name string }
	if code, err := get("/v2/stats/self", &self); err != nil || code != 200 || self.Name != "keys1" {
		t.Errorf("member name %q (%d, %v), want the hostname keys1", self.Name, code, err)
	}
	if code, err := get("/fleet/v1/machines", nil); err != nil || code != http.StatusNotFound {
		t.Errorf("fleet API with the scheduler off: %d %v, want 404", code, err)
	}
	var def struct{ Max int }
	if code, err := get("/pith/v1/locks", &def); err != nil || code != 200 || def.Max != 1 {
		t.Errorf("default group's lock: max %d (%d %v), want locksmith's 1", def.Max, code, err)
	}
}
