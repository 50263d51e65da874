package agent

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// stdin is what `pubkey` reads; tests replace it.
var stdin io.Reader = os.Stdin

// runGenkey prints a new private key, as `wg genkey` does.
func runGenkey(o *options) error {
	return printKey(o, wgtypes.GeneratePrivateKey)
}

// runGenpsk prints a new preshared key, as `wg genpsk` does.
func runGenpsk(o *options) error {
	return printKey(o, wgtypes.GenerateKey)
}

func printKey(o *options, gen func() (wgtypes.Key, error)) error {
	k, err := gen()
	if err != nil {
		return fmt.Errorf("generate key: %w", err)
	}
	_, err = fmt.Fprintln(o.stdout, k.String())
	return err
}

// runPubkey reads a private key on stdin and prints its public key, as
// `wg pubkey` does.
func runPubkey(o *options) error {
	line, err := bufio.NewReader(io.LimitReader(stdin, 256)).ReadString('\n')
	if err != nil && err != io.EOF {
		return fmt.Errorf("pubkey: read the private key from stdin: %w", err)
	}
	if strings.TrimSpace(line) == "" {
		return usageError{"pubkey reads a WireGuard private key on stdin and got none: tunnel-agent pubkey < site.key"}
	}
	k, err := wgtypes.ParseKey(strings.TrimSpace(line))
	if err != nil {
		return usageError{"pubkey reads a WireGuard private key on stdin (44 characters of base64, as " +
			"`tunnel-agent genkey` or `wg genkey` print it), and this is not one: " + err.Error()}
	}
	_, err = fmt.Fprintln(o.stdout, k.PublicKey().String())
	return err
}
