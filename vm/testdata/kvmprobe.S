	.code16
	.text
	.globl start
start:
	cli
	xorw %ax, %ax
	movw %ax, %ds
	movw %ax, %es
	cld
	movw $0x1000, %di
	movw $0x1800, %cx
	rep stosw
	movl $0x2003, 0x1000
	movl $0x3003, 0x2000
	movl $0x0083, 0x3000
	movl $0, 0x500
	movl $0, 0x504
	movl $0x0000ffff, 0x508
	movl $0x00af9b00, 0x50c
	movw $15, 0x520
	movl $0x500, 0x522
	lgdtl 0x520
	movl %cr4, %eax
	orl $0x20, %eax
	movl %eax, %cr4
	movl $0x1000, %eax
	movl %eax, %cr3
	movl $0xC0000080, %ecx
	rdmsr
	orl $0x100, %eax
	wrmsr
	movl %cr0, %eax
	orl $0x80000001, %eax
	movl %eax, %cr0
	ljmpl $0x08, $long
	.code64
long:
	movw $0x3f8, %dx
	movb $'K', %al
	outb %al, %dx
	movl $20000000, %ecx
1:	decl %ecx
	jnz 1b
	movb $'V', %al
	outb %al, %dx
2:	hlt
	jmp 2b
	.code16
	.org 0xFFF0
	.byte 0xEA
	.word 0x0000
	.word 0xF000
	.org 0x10000
