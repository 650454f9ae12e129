/* tasktable.c - where a process pool's tasks are kept until completed.
 *
 * The task table maps ids to tasks while they are pending or sent: open
 * addressing, linear probing, backward-shift delete. The pending queue is
 * doubly linked, FIFO, and a finished task moves to the completion list.
 * Everything here runs with the pool's mutex held, but task_free().
 */
#include "procpool.h"

#include <stdlib.h>

static inline size_t
tt_slot(uint64_t id, size_t cap)
{
    return (size_t)((id * 0x9E3779B97F4A7C15ULL) >> 17) & (cap - 1);
}

/* 0 or -1 (out of memory). Mutex held. */
int
tt_insert(ProcCore *self, pp_task *t)
{
    if ((self->table_len + 1) * 2 > self->table_cap) {
        size_t cap = self->table_cap ? self->table_cap * 2 : 256;
        pp_task **table = calloc(cap, sizeof(*table));
        if (table == NULL)
            return -1;
        for (size_t i = 0; i < self->table_cap; i++) {
            pp_task *e = self->table[i];
            if (e != NULL) {
                size_t j = tt_slot(e->id, cap);
                while (table[j] != NULL)
                    j = (j + 1) & (cap - 1);
                table[j] = e;
            }
        }
        free(self->table);
        self->table = table;
        self->table_cap = cap;
    }
    size_t j = tt_slot(t->id, self->table_cap);
    while (self->table[j] != NULL)
        j = (j + 1) & (self->table_cap - 1);
    self->table[j] = t;
    self->table_len++;
    return 0;
}

pp_task *
tt_find(ProcCore *self, uint64_t id)
{
    if (self->table_cap == 0)
        return NULL;
    size_t j = tt_slot(id, self->table_cap);
    while (self->table[j] != NULL) {
        if (self->table[j]->id == id)
            return self->table[j];
        j = (j + 1) & (self->table_cap - 1);
    }
    return NULL;
}

/* Forgets t; nothing happens if it is not in the table. */
static void
tt_remove(ProcCore *self, pp_task *t)
{
    size_t mask = self->table_cap - 1;
    size_t j = tt_slot(t->id, self->table_cap);
    while (self->table[j] != t) {
        if (self->table[j] == NULL)
            return;
        j = (j + 1) & mask;
    }
    self->table[j] = NULL;
    self->table_len--;
    /* Shift back the entries of the probe run that follows. */
    size_t k = (j + 1) & mask;
    while (self->table[k] != NULL) {
        pp_task *e = self->table[k];
        size_t home = tt_slot(e->id, self->table_cap);
        /* e may move to j if j lies cyclically in [home, k). */
        if (((k - home) & mask) >= ((k - j) & mask)) {
            self->table[j] = e;
            self->table[k] = NULL;
            j = k;
        }
        k = (k + 1) & mask;
    }
}

void
pend_unlink(ProcCore *self, pp_task *t)
{
    if (t->prev)
        t->prev->next = t->next;
    else
        self->pend_head = t->next;
    if (t->next)
        t->next->prev = t->prev;
    else
        self->pend_tail = t->prev;
    t->prev = t->next = NULL;
    self->npending--;
}

/* Appends a new task to the pending queue. Returns 1 if it was empty. */
int
pend_push_back(ProcCore *self, pp_task *t)
{
    t->prev = self->pend_tail;
    if (self->pend_tail)
        self->pend_tail->next = t;
    else
        self->pend_head = t;
    self->pend_tail = t;
    return self->npending++ == 0;
}

/* Puts a task back at the head of the pending queue (it never started). */
void
pend_push_front(ProcCore *self, pp_task *t)
{
    t->state = T_PENDING;
    t->delivered = 0;
    t->cancel_sent = 0;
    t->prev = NULL;
    t->next = self->pend_head;
    if (self->pend_head)
        self->pend_head->prev = t;
    else
        self->pend_tail = t;
    self->pend_head = t;
    self->npending++;
}

/* Records the outcome and hands the task to the completer. */
void
task_finish(ProcCore *self, pp_task *t, int outcome)
{
    if (t->state == T_DONE)
        return;
    if (t->state == T_PENDING)
        pend_unlink(self, t);
    t->state = T_DONE;
    t->outcome = outcome;
    tt_remove(self, t);
    t->next = NULL;
    if (self->done_tail)
        self->done_tail->next = t;
    else
        self->done_head = t;
    self->done_tail = t;
}

void
task_free(pp_task *t)
{
    for (int i = 0; i < t->noob; i++)
        PyBuffer_Release(&t->oob[i]);
    PyMem_RawFree(t->oob);
    PyMem_RawFree(t->lens);
    Py_XDECREF(t->future);
    Py_XDECREF(t->payload);
    free(t->data);
    PyMem_RawFree(t);
}
