package controllers

import (
	"context"
	"fmt"

	"sigs.k8s.io/controller-runtime/pkg/client"
)

// statusPatcher writes an object's status as a merge patch against the last
// state it wrote (or read), and skips empty patches so idle reconciles make
// no apiserver writes.
type statusPatcher[T client.Object] struct {
	c    client.Client
	base T
	opts []client.SubResourcePatchOption
}

func newStatusPatcher[T client.Object](c client.Client, obj T, opts ...client.SubResourcePatchOption) *statusPatcher[T] {
	return &statusPatcher[T]{c: c, base: obj.DeepCopyObject().(T), opts: opts}
}

// Reset takes obj as the new base, after a write of something other than
// status (finalizers) refreshed it.
func (p *statusPatcher[T]) Reset(obj T) { p.base = obj.DeepCopyObject().(T) }

// Patch sends the status changes made since the base.
func (p *statusPatcher[T]) Patch(ctx context.Context, obj T) error {
	patch := client.MergeFrom(p.base)
	data, err := patch.Data(obj)
	if err != nil {
		return fmt.Errorf("compute status patch: %w", err)
	}
	if string(data) == "{}" {
		return nil
	}
	if err := p.c.Status().Patch(ctx, obj, patch, p.opts...); err != nil {
		return fmt.Errorf("patch status: %w", err)
	}
	p.base = obj.DeepCopyObject().(T)
	return nil
}
