#include <stdio.h>

int main(void) {
    printf("Hello from {{name}}!\n");
    return 0;
}
