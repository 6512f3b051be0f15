// Command promlint reads Prometheus text exposition on standard input and lints it with client_golang's
// promlint: naming conventions, units, counter suffixes, help text. It prints each problem as
// `metric: text` and exits 1 when there is any, 2 when the input cannot be parsed.
package main

import (
	"fmt"
	"os"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

func main() {
	problems, err := promlint.New(os.Stdin).Lint()
	if err != nil {
		fmt.Fprintf(os.Stderr, "promlint: cannot parse the exposition: %v\n", err)
		os.Exit(2)
	}
	for _, problem := range problems {
		fmt.Printf("%s: %s\n", problem.Metric, problem.Text)
	}
	if len(problems) > 0 {
		os.Exit(1)
	}
}
