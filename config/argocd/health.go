// Package argocd ships Argo CD health checks for otaflow resources and
// evaluates them with gopher-lua, the interpreter Argo CD embeds, so tests
// can hold them to the same states kstatus reports.
package argocd

import (
	_ "embed"
	"fmt"

	lua "github.com/yuin/gopher-lua"
)

// RolloutHealth is the health check for ota.otaflow.io/Rollout.
//
//go:embed rollout-health.lua
var RolloutHealth string

// FirmwareReleaseHealth is the health check for ota.otaflow.io/FirmwareRelease.
//
//go:embed firmwarerelease-health.lua
var FirmwareReleaseHealth string

// Evaluate runs a health script against an object (as JSON-decoded maps)
// and returns Argo CD's health status and message.
func Evaluate(script string, obj map[string]any) (status, message string, err error) {
	L := lua.NewState()
	defer L.Close()
	v, err := toLua(L, obj)
	if err != nil {
		return "", "", err
	}
	L.SetGlobal("obj", v)
	if err := L.DoString(script); err != nil {
		return "", "", fmt.Errorf("run health script: %w", err)
	}
	ret, ok := L.Get(-1).(*lua.LTable)
	if !ok {
		return "", "", fmt.Errorf("health script returned %s, want a table", L.Get(-1).Type())
	}
	return lua.LVAsString(ret.RawGetString("status")), lua.LVAsString(ret.RawGetString("message")), nil
}

func toLua(L *lua.LState, v any) (lua.LValue, error) {
	switch x := v.(type) {
	case nil:
		return lua.LNil, nil
	case bool:
		return lua.LBool(x), nil
	case string:
		return lua.LString(x), nil
	case float64:
		return lua.LNumber(x), nil
	case int64:
		return lua.LNumber(x), nil
	case int:
		return lua.LNumber(x), nil
	case []any:
		t := L.NewTable()
		for _, e := range x {
			lv, err := toLua(L, e)
			if err != nil {
				return nil, err
			}
			t.Append(lv)
		}
		return t, nil
	case map[string]any:
		t := L.NewTable()
		for k, e := range x {
			lv, err := toLua(L, e)
			if err != nil {
				return nil, err
			}
			t.RawSetString(k, lv)
		}
		return t, nil
	}
	return nil, fmt.Errorf("unsupported value of type %T", v)
}
