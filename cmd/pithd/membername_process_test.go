package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pith-os/pith/cloudconfig"
	"github.com/pith-os/pith/cloudconfig/apply"
	"github.com/pith-os/pith/internal/pithdtest"
	"github.com/pith-os/pith/node"
)

// TestUpdatedMemberKeepsName: a member an older release ran under the
// image's machine-ID name (ETCD_NAME=%m, no name from user-data) restarts
// over the same data dir with the drop-in this release writes for the
// same user-data (the hostname default): it keeps its name, its ID and
// its data.
func TestUpdatedMemberKeepsName(t *testing.T) {
	const machineID = "0123456789abcdef0123456789abcdef"
	client := fmt.Sprintf("http://127.0.0.1:%d", pithdtest.FreePort(t))
	peer := fmt.Sprintf("http://127.0.0.1:%d", pithdtest.FreePort(t))
	dir := t.TempDir()
	bin := pithdtest.Binary(t)
	args := []string{"run", "--name", machineID, "--data-dir", filepath.Join(dir, "kv"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--schedule=false", "--update-settings", "", "--update-conf", "/nonexistent"}

	get := func(path string, v any) error {
		resp, err := http.Get(client + path)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %d %s", path, resp.StatusCode, b)
		}
		return json.Unmarshal(b, v)
	}
	type member struct{ ID, Name string }
	members := func() ([]member, error) {
		var ms struct{ Members []member }
		err := get("/v2/members", &ms)
		return ms.Members, err
	}
	published := func(name string) func() (bool, string) {
		return func() (bool, string) {
			ms, err := members()
			return err == nil && len(ms) == 1 && ms[0].Name == name, fmt.Sprintf("%+v %v", ms, err)
		}
	}

	// The same user-data on both releases: it configures pithd (the
	// cluster's token) and names no member.
	c, rep := cloudconfig.ParseCloudConfig([]byte("#cloud-config\nhostname: web1\npith:\n  cluster: {name: c1}\n"))
	if rep.HasErrors() {
		t.Fatal(rep.Format("user-data"))
	}
	env := apply.AgentEnv(c)
	newName := node.EnvOf("new-member-name")
	if env[newName] != "web1" || env[node.EnvOf("name")] != "" {
		t.Fatalf("drop-in %v: want the hostname default web1 in %s, no --name", env, newName)
	}
	// The older release: the unit's ETCD_NAME=%m, the drop-in's other
	// variables, no recorded name in the data dir.
	for k, v := range env {
		if k != newName {
			t.Setenv(k, v)
		}
	}
	p := pithdtest.Start(t, bin, filepath.Join(dir, "old.log"), args...)
	pithdtest.Poll(t, "member published under the machine ID", published(machineID))
	before, _ := members()
	req, _ := http.NewRequest(http.MethodPut, client+"/v2/keys/k", strings.NewReader(url.Values{"value": {"v"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("set k: %d", resp.StatusCode)
	}
	p.Stop()
	if err := os.Remove(filepath.Join(dir, "kv", "member-name")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}

	// This release: its drop-in for the same user-data.
	t.Setenv(newName, env[newName])
	pithdtest.Start(t, bin, filepath.Join(dir, "new.log"), args...)
	pithdtest.Poll(t, "k readable after the restart", func() (bool, string) {
		var r struct{ Node struct{ Value string } }
		err := get("/v2/keys/k?quorum=true", &r)
		return err == nil && r.Node.Value == "v", fmt.Sprintf("%+v %v", r, err)
	})
	var self struct{ ID, Name string }
	if err := get("/v2/stats/self", &self); err != nil || self.Name != machineID || self.ID != before[0].ID {
		t.Errorf("after the update the member is %+v (%v), want ID %s named %s", self, err, before[0].ID, machineID)
	}
	if ms, err := members(); err != nil || len(ms) != 1 || ms[0] != before[0] {
		t.Errorf("members after the update %+v (%v), want %+v", ms, err, before)
	}
	if log := pithdtest.Tail(filepath.Join(dir, "new.log"), 4000); !strings.Contains(log, "applies to new members only") {
		t.Errorf("no note that the default was not applied in the log:\n%s", log)
	}
}
