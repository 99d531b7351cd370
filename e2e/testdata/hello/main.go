// Command hello is the Kubernetes e2e tests' workload, built by the test
// into a single-layer image. With no arguments it serves HTTP on :8080,
// answering every request with the name of the pod it runs in. As
// `hello get URL N` it asks URL N times, 100 ms apart, and prints each
// answer on a line, so a pod of the same image can be the client.
package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	if len(os.Args) == 4 && os.Args[1] == "get" {
		n, err := strconv.Atoi(os.Args[3])
		if err != nil {
			fmt.Fprintln(os.Stderr, "usage: hello get URL N")
			os.Exit(2)
		}
		os.Exit(get(os.Args[2], n))
	}
	name, _ := os.Hostname()
	http.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, name) })
	srv := &http.Server{Addr: ":8080", ReadHeaderTimeout: 5 * time.Second}
	fmt.Fprintln(os.Stderr, srv.ListenAndServe())
	os.Exit(1)
}

// get prints the answers; it fails only when none came back.
func get(url string, n int) int {
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	ok := 0
	for i := 0; i < n; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err != nil {
			fmt.Fprintln(os.Stderr, "error:", err)
			cancel()
			time.Sleep(200 * time.Millisecond)
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		fmt.Println(strings.TrimSpace(string(b)))
		ok++
		// Spread over a few seconds: a node's kube-proxy programs a Service's
		// endpoints a moment after a rollout reports them ready.
		time.Sleep(100 * time.Millisecond)
	}
	if ok == 0 {
		return 1
	}
	return 0
}
