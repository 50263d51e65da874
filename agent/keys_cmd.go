package agent

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// stdin is what `pubkey` reads; tests replace it.
var stdin io.Reader = os.Stdin

// noFlags is the flag set of commands without flags.
func noFlags(*flag.FlagSet, *options) {}

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
		return fmt.Errorf("read private key from stdin: %w", err)
	}
	k, err := parseKey(line)
	if err != nil {
		return usageError{"pubkey: stdin: " + err.Error()}
	}
	_, err = fmt.Fprintln(o.stdout, wgtypes.Key(publicKey(k)).String())
	return err
}
