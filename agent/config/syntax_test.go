package config

import (
	"errors"
	"strings"
	"testing"
)

// TestSyntaxErrorLines checks that a YAML syntax error is placed where
// the parser found it, not where the enclosing block starts (yaml.v3's
// own message said line 9 for line 14, line 6 for line 9, line 13 for 14).
func TestSyntaxErrorLines(t *testing.T) {
	tests := []struct {
		file      string
		line, col int
		msg       string
	}{
		{"extra-indented-key.yaml", 14, 4, "did not find expected key"},
		{"bad-indent.yaml", 9, 6, "did not find expected '-' indicator"},
		{"indented-under-list.yaml", 15, 9, "did not find expected key"},
		{"outdented-key.yaml", 14, 2, "did not find expected key"},
		{"unclosed-list.yaml", 9, 12, "did not find expected ',' or ']'"},
		{"second-document.yaml", 10, 6, "only one YAML document"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			_, err := Load("testdata/syntax/"+tt.file, cfgHost)
			var ce *Error
			if !errors.As(err, &ce) || len(ce.Errors) == 0 {
				t.Fatalf("Load = %v, want a syntax error", err)
			}
			fe := ce.Errors[len(ce.Errors)-1]
			if fe.Line != tt.line || fe.Column != tt.col || !strings.Contains(fe.Msg, tt.msg) {
				t.Errorf("got %q\nwant line %d, column %d, message with %q", fe.Error(), tt.line, tt.col, tt.msg)
			}
		})
	}
}
